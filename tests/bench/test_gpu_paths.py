"""bench/gpu_paths.py: its CPU smoke run (``--device cpu --tiny``) goes through every path of both
backbones and prints one table; a failed path is a row marked NO and the exit status."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PATHS = ["build", "sft step (ZeRO-2, distillation)", "reflective sft step", "grpo learner step (KL, masks)",
         "[SEG] pass + SAM", "evaluation forward", "broadcast buckets", "parity with the CPU (tiny, float32 + bf16)"]


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_the_cpu_smoke_run_passes_every_path_of_both_backbones(tmp_path):
    out = tmp_path / "paths.md"
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "gpu_paths.py"), "--device", "cpu", "--tiny",
                           "--out", str(out)], capture_output=True, text=True, timeout=850, cwd=tmp_path,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in out.read_text().splitlines()
            if line.startswith("| ") and not line.startswith("| backbone")]
    done = {(r[0], r[1]) for r in rows if r[2] == "yes"}
    assert all((b, p) in done for b in ("videollama2-av", "qwen2.5-omni") for p in PATHS), rows
    assert any(r[1] == "learner step throughput (batch 2)" and "TFLOP/s" in r[5] for r in rows)
    assert sum(r[1].startswith("SAM at ") for r in rows) == 2 and all(r[2] == "yes" for r in rows)
    assert "reflective" in proc.stdout and out.read_text() in proc.stdout


def test_a_failing_path_is_a_row_marked_no_and_the_run_fails():
    from bench.gpu_paths import Run, sizes, table

    run = Run("cpu", sizes(tiny=True))
    run.path("videollama2-av", "works", lambda: "fine")
    run.path("videollama2-av", "breaks", lambda: 1 / 0)
    text = table(run, "t")
    assert "| videollama2-av | works | yes |" in text and "| videollama2-av | breaks | **NO** |" in text
    assert "ZeroDivisionError" in text and [ok for _, _, ok, *_ in run.rows] == [True, False]
