import json

from aurora_rl.report.eval_outputs import StageEval
from aurora_rl.report.verdict import compare_stages


def _eval(j_s, j_u, samples=None):
    return StageEval({"test_s": {"J": j_s, "class_acc": 1.0, "format_rate": 1.0},
                      "test_u": {"J": j_u, "class_acc": 1.0, "format_rate": 1.0},
                      "mix": {"J": (j_s + j_u) / 2}}, samples or {}, None)


def _sample(uid, failure, target="drum", iou=0.9):
    return {"uid": uid, "split": "test_s", "failure": failure, "target_class": target, "gt_class": "drum", "iou": iou}


def test_report_names_the_stage_that_did_not_improve_and_why(built_report):
    verdicts = {v["stage"]: v for v in json.loads((built_report.out_dir / "results.json").read_text())["verdict"]}
    assert verdicts["sft"]["improved"] is True and not verdicts["sft"]["reasons"]
    grpo = verdicts["grpo"]
    assert grpo["improved"] is False and grpo["previous"] == "sft"
    assert {k: v["improved"] for k, v in grpo["held_out_J"].items()} == {"test_s": True, "test_u": False, "mix": False}
    why = " ".join(grpo["reasons"]["test_u"])
    assert "'wrong class' 0 → 2" in why
    assert "Class accuracy 0.900 → 0.700 (-0.200)" in why
    assert "Format rate (well-formed answers) unchanged at 1.000" in why
    assert "2 of 3 samples changed failure kind" in why and "2 from fine to 'wrong class'" in why
    assert "test_s moved +0.0500 and test_u moved -0.1000" in " ".join(grpo["reasons"]["mix"])
    md = (built_report.out_dir / "results.md").read_text()
    assert "**did not improve**: grpo vs sft" in md and "**improved**: sft vs untrained" in md


def test_unchanged_j_is_not_an_improvement_and_rounding_noise_is_no_change():
    v = compare_stages("a", _eval(0.5, 0.4), "b", _eval(0.5 + 1e-6, 0.41))
    assert [c.improved for c in v.changes] == [False, True, True]
    assert "did not improve on test_s" in v.headline() and list(v.reasons) == ["test_s"]


def test_missing_j_cannot_be_compared():
    prev = StageEval({"test_s": {"J": 0.5}}, {}, None)
    v = compare_stages("a", prev, "b", _eval(0.6, 0.4))
    assert [c.improved for c in v.changes] == [True, None, None]
    assert not v.improved and "could not be compared" in v.headline()


def test_explanation_separates_mask_quality_from_classification():
    prev = _eval(0.6, 0.4, {"u1": _sample("u1", None), "u2": _sample("u2", None), "u3": _sample("u3", "wrong class", "dog")})
    cur = _eval(0.5, 0.4, {"u1": _sample("u1", "right class but poor mask", iou=0.2), "u2": _sample("u2", None, iou=0.8),
                           "u3": _sample("u3", None)})
    why = " ".join(compare_stages("a", prev, "b", cur).reasons["test_s"])
    assert "'right class but poor mask' 0 → 1 (1 → 1 failures in all)" in why
    assert "2 of 3 samples changed failure kind (1 got a failure, 1 lost one, 0 swapped kinds)" in why
    assert "On the 2 samples whose class was right in both stages, mean IoU 0.900 → 0.500 (-0.400)" in why
