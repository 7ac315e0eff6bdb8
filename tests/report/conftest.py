"""One synthetic benchmark and one report built from three fake stages, shared by the report tests.

The stages: "untrained" (malformed answers, no training), "sft" (better everywhere) and "grpo",
which gains on test_s but loses on test_u, where two samples become "wrong class" — the case
the verdict has to explain.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from aurora_rl.data.synthetic import generate_benchmark
from aurora_rl.report import StageResult, build_report
from tests.report.fake_outputs import (held_out_rows, split_results, write_fake_eval, write_grpo_metrics,
                                       write_sft_metrics)


@dataclass
class BuiltReport:
    index: Path
    out_dir: Path
    data_root: Path
    stages: list[StageResult]
    results: dict[str, dict]  # stage -> the results.json written for it
    grpo_wrong_uids: list[str]


@pytest.fixture(scope="session")
def data_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("bench")
    generate_benchmark(root, videos=12, seed=0)
    return root


@pytest.fixture(scope="session")
def built_report(tmp_path_factory, data_root) -> BuiltReport:
    demo = tmp_path_factory.mktemp("demo")
    rows = held_out_rows(data_root)
    everything = [r.uid for split_rows in rows.values() for r in split_rows]
    wrong = [r.uid for r in rows["test_u"][:2]]
    results = {
        "untrained": split_results(0.10, 0.08, s_null=0.61, class_acc=0.0, format_rate=0.0),
        "sft": split_results(0.55, 0.50, s_null=0.20, class_acc=0.9),
        "grpo": split_results(0.60, 0.40, s_null=0.15, class_acc=0.7),
    }
    outcomes = {
        "untrained": {u: "malformed answer" for u in everything},
        "sft": {},
        "grpo": {u: "wrong class" for u in wrong},
    }
    metrics = {
        "untrained": [],
        "sft": [write_sft_metrics(demo / "sft" / "metrics.jsonl", resume_from=25)],
        "grpo": [write_grpo_metrics(demo / "grpo" / "metrics.jsonl")],
    }
    stages = []
    for name in ("untrained", "sft", "grpo"):
        eval_dir = write_fake_eval(demo / "eval" / name, data_root, results[name], outcomes[name])
        stages.append(StageResult(name, None if name == "untrained" else demo / name / "final", eval_dir,
                                  metrics[name]))
    index = build_report(demo, stages, data_root, demo / "report")
    return BuiltReport(index, demo / "report", data_root, stages, results, wrong)
