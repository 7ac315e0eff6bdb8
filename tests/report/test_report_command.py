"""``aurora-rl report RUN...``: the report of any runs, found from their folders."""

from __future__ import annotations

import shutil

import pytest

from aurora_rl.cli import main
from aurora_rl.report.eval_outputs import ReportError
from aurora_rl.report.link_check import check_report_links
from aurora_rl.report.run_stages import stage_of


def as_run_folder(built_report, name: str, tmp_path):
    """A training run folder as `train` and `aurora-rl eval --ckpt <run>/checkpoint` leave it."""
    stage = next(s for s in built_report.stages if s.name == name)
    run = tmp_path / "runs" / f"tiny-{name}"
    (run / "checkpoint").mkdir(parents=True)
    shutil.copytree(stage.eval_dir, run / "checkpoint" / "eval" / "a")
    for metrics in stage.metrics_files:
        shutil.copy(metrics, run / "metrics.jsonl")
    return run


def test_runs_and_evaluation_folders_make_the_report(built_report, tmp_path, capsys):
    untrained = next(s for s in built_report.stages if s.name == "untrained").eval_dir  # an evaluation folder
    sft, grpo = (as_run_folder(built_report, name, tmp_path) for name in ("sft", "grpo"))
    out = tmp_path / "report"
    code = main(["report", str(untrained), str(sft), str(grpo), "--data", str(built_report.data_root),
                 "--names", "untrained,sft,grpo", "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    assert f"report: {out / 'index.html'}" in capsys.readouterr().out
    html = (out / "index.html").read_text()
    assert "<b>partly improved</b>: grpo vs sft" in html and "curves/grpo.png" in html  # metrics found
    assert (out / "curves" / "sft.png").is_file() and check_report_links(out / "index.html") == []
    assert stage_of(sft).name == "tiny-sft" and stage_of(sft).checkpoint == sft / "checkpoint"


def test_a_run_without_an_evaluation_is_named_with_the_command_that_makes_one(tmp_path, built_report, capsys):
    run = tmp_path / "runs" / "tiny-sft"
    (run / "checkpoint").mkdir(parents=True)
    with pytest.raises(ReportError, match=r"no evaluation found .* aurora-rl eval --ckpt .*tiny-sft/checkpoint"):
        stage_of(run)
    assert main(["report", str(run), "--data", str(built_report.data_root), "--out", str(tmp_path / "r")]) == 1
    assert "no evaluation found" in capsys.readouterr().err
    assert main(["report", str(run), str(run), "--data", "d", "--names", "one"]) == 2
