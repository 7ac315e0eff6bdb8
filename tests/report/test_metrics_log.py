import json

from aurora_rl.report.metrics_log import read_metrics
from tests.report.fake_outputs import write_sft_metrics


def test_resumed_run_keeps_the_last_row_per_step(tmp_path):
    path = write_sft_metrics(tmp_path / "metrics.jsonl", steps=30, resume_from=25)
    steps, total = read_metrics([path])["total"]
    assert list(steps) == list(range(1, 31))
    assert list(total[24:]) == [100.0 + s for s in range(25, 31)]
    assert all(t < 100 for t in total[:24])


def test_files_in_order_later_wins_and_bad_values_are_skipped(tmp_path):
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    a.write_text(json.dumps({"step": 1, "ce": 2.0, "note": "x"}) + "\n" + '{"step": 2, "ce": 1.' + "\n")
    b.write_text(json.dumps({"step": 1, "ce": 1.5, "kl": float("nan"), "time": 5.0}) + "\n"
                 + json.dumps({"step": 3, "ce": 1.0, "ok": True}) + "\n")
    series = read_metrics([a, b])
    assert set(series) == {"ce"}  # strings, booleans, NaNs and wall-clock time are not series
    assert list(series["ce"][0]) == [1, 3] and list(series["ce"][1]) == [1.5, 1.0]
