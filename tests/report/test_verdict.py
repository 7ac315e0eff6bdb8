import json
from html import escape

import numpy as np
import pytest

from aurora_rl.report.eval_outputs import StageEval
from aurora_rl.report.verdict import NOISE_NOTE, compare_stages


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
    # test_s: every clip as before, so the +0.05 of J has no spread; test_u: 2 of 3 clips fell, 1 did not
    assert {k: v["outcome"] for k, v in grpo["held_out_J"].items()} == {
        "test_s": "improved", "test_u": "within the noise", "mix": "within the noise"}
    assert grpo["held_out_J"]["test_s"]["interval_95"] == pytest.approx([0.05, 0.05])
    low, high = grpo["held_out_J"]["test_u"]["interval_95"]
    assert low < -0.1 < 0 < high and grpo["held_out_J"]["test_u"]["clips"] == 3
    assert grpo["label"] == "partly improved" and verdicts["sft"]["label"] == "improved"
    md = (built_report.out_dir / "results.md").read_text()
    assert "**partly improved**: grpo vs sft" in md and "**improved**: sft vs untrained" in md
    assert "moved within the noise of the test clips on test_u (0.5000 → 0.4000, -0.1000; 95 % interval" in md
    assert NOISE_NOTE in md and escape(NOISE_NOTE) in built_report.index.read_text()


def test_unchanged_j_is_not_an_improvement_and_rounding_noise_is_no_change():
    v = compare_stages("a", _eval(0.5, 0.4), "b", _eval(0.5 + 1e-6, 0.41))
    assert [c.improved for c in v.changes] == [False, True, True]
    assert [c.outcome for c in v.changes] == ["unchanged", "improved", "improved"]
    assert "was unchanged on test_s" in v.headline() and list(v.reasons) == ["test_s"]
    assert "test_u, Mix judged by sign only (no per-clip scores)" in v.headline()  # no samples in either stage


def _scored(j_s, j_u, ious_s, ious_u):
    """A stage with per-clip IoU on test_s and test_u (uids s0.. and u0..)."""
    samples = {f"{p}{i}": {"uid": f"{p}{i}", "split": split, "failure": None, "target_class": "drum",
                           "gt_class": "drum", "iou": iou}
               for p, split, ious in (("s", "test_s", ious_s), ("u", "test_u", ious_u)) for i, iou in enumerate(ious)}
    return _eval(j_s, j_u, samples)


def test_a_change_inside_the_noise_of_the_clips_is_no_improvement():
    rng = np.random.default_rng(0)
    base_s, base_u = rng.uniform(0, 1, 200), rng.uniform(0, 1, 200)
    # +0.01 on average, but clip by clip the two stages differ by up to +-0.5
    noisy_s = np.clip(base_s + rng.uniform(-0.5, 0.5, 200) + 0.01, 0, 1)
    v = compare_stages("a", _scored(0.50, 0.40, base_s, base_u), "b", _scored(0.51, 0.40, noisy_s, base_u))
    s, u, mix = v.changes
    assert s.outcome == "within the noise" and s.low < 0 < s.high and s.clips == 200
    assert s.low < s.delta < s.high and s.high - s.low > 0.03  # 200 clips of this spread: a few points of J
    assert u.outcome == "unchanged" and mix.outcome == "within the noise" and mix.clips == 400
    assert v.label == "no clear change" and not v.improved and set(v.reasons) == {"test_s", "test_u", "mix"}
    assert ("moved within the noise of the test clips on test_s (0.5000 → 0.5100, +0.0100; 95 % interval"
            in v.headline())


def test_a_change_every_clip_shares_is_an_improvement_or_a_loss():
    base = np.linspace(0.1, 0.9, 50)
    up = compare_stages("a", _scored(0.50, 0.40, base, base), "b", _scored(0.55, 0.45, base + 0.05, base + 0.05))
    assert [c.outcome for c in up.changes] == ["improved"] * 3 and up.label == "improved" and up.improved
    assert up.changes[0].low == pytest.approx(0.05) and up.changes[2].clips == 100
    down = compare_stages("a", _scored(0.50, 0.40, base, base), "b", _scored(0.45, 0.40, base - 0.05, base))
    assert [c.outcome for c in down.changes] == ["worse", "unchanged", "worse"] and down.label == "got worse"
    assert "held-out J fell on test_s (0.5000 → 0.4500, -0.0500; 95 % interval -0.0500 to -0.0500 over 50 clips)" \
        in down.headline()
    # +0.0001 as printed, with an interval whose low end is above 0 but prints as +0.0000: judged as printed
    tiny = compare_stages("a", _scored(0.50, 0.40, base, base), "b",
                          _scored(0.50007, 0.40, base + np.array([0.0, 0.0002] * 25), base))
    assert 0 < tiny.changes[0].low < 0.00005 and tiny.changes[0].outcome == "within the noise"
    assert "(0.5000 → 0.5001, +0.0001; 95 % interval +0.0000 to +0.0001 over 50 clips)" in tiny.headline()
    mixed = compare_stages("a", _scored(0.50, 0.40, base, base), "b", _scored(0.55, 0.35, base + 0.05, base - 0.05))
    assert [c.outcome for c in mixed.changes] == ["improved", "worse", "unchanged"] and mixed.label == "mixed"


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
