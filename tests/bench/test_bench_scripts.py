"""Every benchmark script runs with its tiniest arguments and prints its baseline | ours | ratio table."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
# the scripts import ``bench.*`` from the repository, as their documented ``PYTHONPATH=.`` gives it
WITH_REPO = {"PYTHONPATH": str(BENCH.parent)}


def run_bench(script: str, tmp_path: Path, *args: str, timeout: int = 600, env: dict | None = None) -> str:
    """Run ``bench/<script>`` with ``--out`` into ``tmp_path``; returns the markdown it wrote."""
    out = tmp_path / "table.md"
    proc = subprocess.run([sys.executable, str(BENCH / script), *args, "--out", str(out)], capture_output=True,
                          text=True, timeout=timeout, cwd=tmp_path, env={**(env or os.environ), **WITH_REPO})
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    text = out.read_text()
    assert "| ours / baseline |" in text and text in proc.stdout
    return text


def table_rows(text: str) -> list[list[str]]:
    """The data rows of the first table: [case, metric, baseline, ours, ratio]."""
    lines = [line for line in text.splitlines() if line.startswith("| ") and not line.startswith("| case")]
    rows = [[cell.strip() for cell in line.strip("|").split("|")] for line in lines]
    return [r for r in rows if len(r) == 5 and r[4].endswith("x")]


def test_side_by_side_table_and_turns():
    from bench.side_by_side import Table, interleaved

    order = []
    times = interleaved({"a": lambda: order.append("a"), "b": lambda: order.append("b")}, reps=2)
    assert order == ["a", "b"] * 3 and len(times["a"]) == len(times["b"]) == 2  # one warm-up turn, then 2
    table = Table("t", "HF", "vLLM")
    table.add("case", "tokens/s", 100.0, 350.0)
    text = table.markdown()
    assert "| case | tokens/s | 100 | 350 | 3.50x |" in text and "baseline: HF" in text and "Machine: " in text


def test_reward_throughput(tmp_path):
    rows = table_rows(run_bench("reward_throughput.py", tmp_path, "--records", "12", "--passes", "1", "--videos",
                                "4", "--mask-sizes", "32"))
    assert len(rows) == 5 and all(float(r[4].rstrip("x")) > 0 for r in rows)


def test_data_loading(tmp_path):
    rows = table_rows(run_bench("data_loading.py", tmp_path, "--videos", "4", "--passes", "1", "--prompts", "2"))
    assert [r[0].split(",")[0] for r in rows] == ["kaldi_fbank"] * 3 + ["whisper_log_mel"] * 3
    assert float(rows[0][2].replace(",", "")) > float(rows[1][2].replace(",", ""))  # fewer reads once deduplicated


@pytest.mark.slow
def test_rollout_sampling(tmp_path):
    rows = table_rows(run_bench("rollout_sampling.py", tmp_path, "--sizes", "tiny", "--prompts", "1", "--group",
                                "2", "--new-tokens", "4", "--reps", "1", "--skip", "vllm-all-cores", "vllm-auto"))
    assert [r[1] for r in rows] == ["tokens/s", "completions/s", "tokens/s"]


@pytest.mark.slow
def test_weight_broadcast(tmp_path):
    rows = table_rows(run_bench("weight_broadcast.py", tmp_path, "--sizes", "tiny", "--bucket-mb", "1", "--reps",
                                "1"))
    assert len(rows) == 3 and all(r[1] == "GB/s" for r in rows)


@pytest.mark.slow
def test_weight_apply(tmp_path):
    # the LoRA policy only: an LLM trained in full sends every tensor (tests/actors/test_policy_engine.py)
    rows = table_rows(run_bench("weight_apply.py", tmp_path, "--sizes", "tiny", "--trainings", "lora", "--reps", "1"))
    assert [r[1] for r in rows] == ["ms", "ms", "MiB"]
    lora_sent = rows[2]
    assert "(27 vs 14 tensors)" in lora_sent[0] and float(lora_sent[3]) < float(lora_sent[2])  # q/v LoRA: qkv only


@pytest.mark.slow
@pytest.mark.timeout(1500)
def test_grpo_step(ray_node, tmp_path):
    # joins the session's Ray node through RAY_ADDRESS, as under `ray job submit` (Redis stays its own)
    text = run_bench("grpo_step.py", tmp_path, "--steps", "2", "--prompts", "2", "--new-tokens", "8", "--videos",
                     "4", timeout=1400, env={**os.environ, **ray_node.client_env()})
    assert len(table_rows(text)) == 4 and "| learn |" in text and "| record queue" in text


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_async_pipeline(ray_node, tmp_path):
    text = run_bench("async_pipeline.py", tmp_path, "--steps", "2", "--warmup", "0", "--trend-steps", "0",
                     "--videos", "4", "--cases", "k=0, pinned", "k=1, pinned", timeout=1100,
                     env={**os.environ, **ray_node.client_env()})
    assert len(table_rows(text)) == 2 and "target: k = 1's step time" in text and "| k=1, pinned |" in text


def test_the_broadcast_trend_is_a_least_squares_slope_per_100_steps():
    from bench.async_pipeline import slope_per_100

    assert slope_per_100([1.0, 1.0, 1.0]) == 0.0
    assert slope_per_100([0.0, 0.5, 1.0, 1.5]) == pytest.approx(50.0)  # 0.5 a step
    assert slope_per_100([3.0, 1.0, 2.0]) == pytest.approx(-50.0)  # (-1 * 1 + 1 * 0) / 2 per step


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_eval_memory(ray_node, tmp_path):
    text = run_bench("eval_memory.py", tmp_path, "--clips", "4", "8", "--actors", "1", timeout=800,
                     env={**os.environ, **ray_node.client_env()})
    rows = table_rows(text)
    assert len(rows) == 6 and all(r[1] == "MiB" for r in rows)
    assert "growth from 4 to 8 clips, now:" in text


def test_the_learning_check_reads_the_late_steps_mask_comparison():
    from bench.async_pipeline import late_masks

    rows = {s: {"mask_iou_learner": 0.6, "mask_iou_sampled": 0.5, "mask_agreement": 0.9} for s in range(1, 101)}
    rows[1] = {"mask_iou_learner": 0.9, "mask_iou_sampled": 0.1, "mask_agreement": 0.1}  # before step 81: left out
    rows[90] = {"mask_iou_learner": float("nan"), "mask_iou_sampled": float("nan"), "mask_agreement": float("nan")}
    rows[91]["mask_agreement"] = 0.71  # no completion with both masks in step 90
    assert late_masks(rows) == ("+0.10000", f"{(18 * 0.9 + 0.71) / 19:.4f}")
    assert late_masks({s: {} for s in range(1, 101)}) == ("-", "-")  # a run from before the comparison
