"""bench/research/grpo_seeds.py's table: the training-reward row and the gain-against-spread verdict."""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

from bench.research.grpo_seeds import add_training_reward, render  # noqa: E402


def split_metrics(j: float, acc: float) -> dict:
    return {"J": j, "class_acc": acc}


def test_training_reward_first_tenth_against_last_tenth_and_verdict(tmp_path):
    results = {"start": {"test_s": split_metrics(0.30, 0.40), "test_u": split_metrics(0.25, 0.0),
                         "mix": {"J": 0.275}}}
    for i, (j, last_reward) in enumerate([(0.34, 2.0), (0.36, 2.2), (0.35, 2.1)]):
        seed = f"seed{i}"
        (tmp_path / seed).mkdir()
        rewards = [1.0] * 2 + [1.5] * 16 + [last_reward] * 2  # 20 steps: window 2
        lines = [json.dumps({"step": s + 1, "reward": r}) for s, r in enumerate(rewards)]
        (tmp_path / seed / "metrics.jsonl").write_text("\n".join(reversed(lines)) + "\n")  # order comes from "step"
        results[seed] = {"test_s": split_metrics(j, 0.40), "test_u": split_metrics(0.25, 0.0), "mix": {"J": j}}
    seeds = ["seed0", "seed1", "seed2"]
    add_training_reward(results, tmp_path, seeds, window=2)
    assert results["start"]["train"]["reward"] == 1.0
    assert [results[s]["train"]["reward"] for s in seeds] == [2.0, 2.2, 2.1]
    rows = {line.split(" | ")[0].strip("| "): line for line in render(results, seeds).splitlines()[2:]}
    assert rows["train reward"].endswith("| +1.1000 | yes |")
    assert rows["test_s J"].endswith("| +0.0500 | yes |")  # mean 0.35, std 0.0082
    assert rows["test_s class_acc"].endswith("| +0.0000 | no |")  # no gain is never "above the spread"


def test_two_evaluations_pool_by_clip_count():
    from bench.research.grpo_seeds import pool

    a = {"train": {"reward": 2.0}, "test_s": {"J": 0.50, "F": 0.60, "class_acc": 0.40, "clips": 100},
         "test_u": {"J": 0.30, "F": 0.40, "class_acc": 0.0, "clips": 100}}
    b = {"test_s": {"J": 0.60, "F": 0.70, "class_acc": 0.70, "clips": 300},
         "test_u": {"J": 0.50, "F": 0.60, "class_acc": 0.0, "clips": 100}}
    both = pool(a, b)
    assert both["train"] == {"reward": 2.0}
    assert both["test_s"]["J"] == 0.575 and both["test_s"]["class_acc"] == 0.625 and both["test_s"]["clips"] == 400
    assert both["test_u"]["J"] == 0.40 and both["test_u"]["clips"] == 200
    assert both["mix"]["J"] == 0.4875 and both["mix"]["F"] == (0.675 + 0.5) / 2


def test_interval_table_pairs_seeds_with_the_start_clip_by_clip():
    from bench.research.grpo_seeds import render_intervals

    start = {split: {f"c{i}": (0.1 * (i % 7), 0.0) for i in range(40)} for split in ("test_s", "test_u")}
    seeds = [{split: {u: (j + shift, 1.0) for u, (j, _) in clips.items()} for split, clips in start.items()}
             for shift in (0.02, 0.04)]
    rows = {line.split(" | ")[0].strip("| "): line for line in render_intervals(start, seeds).splitlines()[2:]}
    assert rows["test_s clip J"] == "| test_s clip J | 40 | +0.0300 | [+0.0300, +0.0300] | yes |"
    assert rows["test_u class_acc"] == "| test_u class_acc | 40 | +1.0000 | [+1.0000, +1.0000] | yes |"


def test_a_seed_run_short_of_the_steps_is_found_and_its_earlier_evaluation_kept(tmp_path):
    from bench.research.grpo_seeds import keep_earlier_evaluation, trained_steps

    run = tmp_path / "seed0"
    assert trained_steps(run) == 0  # never started
    (run / "checkpoints" / "step_000100").mkdir(parents=True)
    (run / "checkpoints" / "step_000100" / "job_state.json").write_text(json.dumps({"step": 100, "version": 100}))
    (run / "checkpoints" / "latest").write_text("step_000100\n")
    assert trained_steps(run) == 100
    evaluation = tmp_path / "eval" / "seed0"
    evaluation.mkdir(parents=True)
    (evaluation / "results.json").write_text('{"test_s": {"J": 0.5}}')
    keep_earlier_evaluation(evaluation, 100)
    assert not evaluation.exists()  # evaluated again after the run goes on
    assert (tmp_path / "eval" / "seed0-step100" / "results.json").read_text() == '{"test_s": {"J": 0.5}}'
    keep_earlier_evaluation(tmp_path / "eval" / "seed1", 100)  # nothing evaluated yet: nothing to move
    assert not (tmp_path / "eval" / "seed1-step100").exists()
