import json
import math

from aurora_rl.report.eval_outputs import StageEval
from aurora_rl.report.results_table import markdown_table, table_rows

SPLITS = ["val", "test_s", "test_u", "test_n", "mix"]


def test_every_cell_comes_from_the_stage_results_json(built_report):
    report = json.loads((built_report.out_dir / "results.json").read_text())
    rows = report["rows"]
    assert [(r["stage"], r["split"]) for r in rows] == [(s, x) for s in ("untrained", "sft", "grpo") for x in SPLITS]
    for r in rows:
        given = built_report.results[r["stage"]][r["split"]]
        for key in ("J", "F", "S", "class_acc", "format_rate", "clips"):
            if key in given:
                assert r[key] == given[key], (r["stage"], r["split"], key)
            else:
                assert r[key] is None  # NaN is written as null: results.json is strict JSON


def test_change_column_is_held_out_j_minus_previous_stage(built_report):
    rows = {(r["stage"], r["split"]): r for r in json.loads((built_report.out_dir / "results.json").read_text())["rows"]}
    res = built_report.results
    for split in ("test_s", "test_u", "mix"):
        assert math.isclose(rows["grpo", split]["dJ"], res["grpo"][split]["J"] - res["sft"][split]["J"])
        assert rows["untrained", split]["dJ"] is None
    assert rows["sft", "val"]["dJ"] is None and rows["sft", "test_n"]["dJ"] is None
    md = (built_report.out_dir / "results.md").read_text()
    assert "| grpo | test_u | 0.4000 | 0.4500 | - | 0.7000 | 1.0000 | 3 | -0.1000 |" in md
    assert "| grpo | test_n | - | - | 0.1500 |" in md


def test_split_missing_in_one_stage_gives_no_row_and_no_change():
    a = StageEval({"test_s": {"J": 0.5, "F": 0.6, "clips": 2}, "mix": {"J": float("nan"), "F": float("nan")}}, {}, None)
    b = StageEval({"test_u": {"J": 0.3, "F": 0.4, "clips": 2}, "mix": {"J": float("nan"), "F": float("nan")}}, {}, None)
    rows = table_rows(["a", "b"], [a, b])
    assert [(r["stage"], r["split"]) for r in rows] == [("a", "test_s"), ("a", "mix"), ("b", "test_u"), ("b", "mix")]
    assert math.isnan(rows[2]["dJ"])  # a has no test_u J to compare with
    assert "| b | test_u | 0.3000 | 0.4000 | - | - | - | 2 | - |" in markdown_table(rows)
