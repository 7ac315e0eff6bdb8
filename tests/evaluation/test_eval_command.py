"""``aurora-rl eval --compare``'s verdict, read from the two evaluation folders it writes."""

from __future__ import annotations

from aurora_rl.commands.eval import compare_evaluations
from aurora_rl.report.verdict import NOISE_NOTE
from tests.report.fake_outputs import held_out_rows, split_results, write_fake_eval


def test_the_verdict_judges_the_evaluated_splits_beyond_the_noise_of_their_clips(tmp_path, synthetic_root):
    wrong = [r.uid for r in held_out_rows(synthetic_root)["test_u"]]  # every test_u clip loses its mask in B
    results_a = split_results(0.55, 0.50, s_null=0.20, class_acc=0.9)
    a = write_fake_eval(tmp_path / "a", synthetic_root, results_a)
    b = write_fake_eval(tmp_path / "b", synthetic_root, split_results(0.55, 0.10, s_null=0.20, class_acc=0.5),
                        {u: "wrong class" for u in wrong})
    verdict = compare_evaluations("A", a, "B", b, results_a)
    assert verdict.startswith(NOISE_NOTE)
    assert "- **got worse**: B vs A: held-out J fell on test_u (0.5000 → 0.1000, -0.4000; 95 % interval" in verdict
    assert f"over {len(wrong)} clips), Mix (" in verdict
    assert "was unchanged on val (0.5600 → 0.5600, +0.0000), test_s (0.5500 → 0.5500, +0.0000)." in verdict
    assert "test_n (null) S, lower is better: unchanged" in verdict  # a note: test_n has no J to judge

    only_test_s = {"test_s": results_a["test_s"], "test_n": results_a["test_n"], "mix": {"J": float("nan")}}
    verdict = compare_evaluations("A", a, "B", b, only_test_s)  # splits without J are not judged
    headline = next(line for line in verdict.splitlines() if line.startswith("- **"))
    assert headline == "- **no clear change**: B vs A: held-out J was unchanged on test_s (0.5500 → 0.5500, +0.0000)."
