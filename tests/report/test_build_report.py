import json

import pytest

from aurora_rl.report import StageResult, build_report
from aurora_rl.report.eval_outputs import ReportError


def test_page_shows_table_verdict_curves_and_reasoning(built_report):
    html = built_report.index.read_text()
    for text in ("<h2 id='results'>", "<td>grpo</td><td>test_u</td><td>0.4000</td>", "did not improve",
                 "grpo vs sft", "&#x27;wrong class&#x27; 0 → 2", "curves/sft.png", "curves/grpo.png",
                 "Stage untrained: no training metrics", "step 4 : the target is violin . it is [SEG] ."):
        assert text in html, text
    # ΔJ is coloured where the verdict finds it beyond the clips' noise: grpo's test_s gain, not its test_u loss
    assert "<b>partly improved</b>: grpo vs sft" in html
    assert "<td class='up'>+0.0500</td>" in html and "<td>-0.1000</td>" in html and "class='down'" not in html
    assert str(built_report.out_dir) not in html and str(built_report.data_root) not in html  # relative only
    stages = json.loads((built_report.out_dir / "results.json").read_text())["stages"]
    assert stages[1] == {"name": "sft", "checkpoint": "sft/final", "eval_dir": "eval/sft"}


def test_missing_evaluation_names_the_file(tmp_path, data_root):
    with pytest.raises(ReportError, match="results.json"):
        build_report(tmp_path, [StageResult("sft", None, tmp_path / "nowhere")], data_root, tmp_path / "out")


def test_stage_names_must_be_distinct(tmp_path, data_root):
    stage = StageResult("sft", None, tmp_path)
    with pytest.raises(ValueError, match="distinct"):
        build_report(tmp_path, [stage, stage], data_root, tmp_path / "out")
