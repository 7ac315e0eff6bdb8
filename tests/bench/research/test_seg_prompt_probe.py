"""bench/research/seg_prompt_probe.py on a random tiny checkpoint: the table, and a refit that trains."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def test_probe_table_and_refit(synthetic_root, tmp_path):
    from aurora_rl.data.synthetic import synthetic_words
    from aurora_rl.model.build import MediaShape, build_tiny_policy
    from aurora_rl.model.checkpoint import save_policy
    from aurora_rl.model.tokenizer import build_word_tokenizer
    from tests.model.tiny_policy import tiny_model_config

    tok = build_word_tokenizer(synthetic_words())
    cfg, shape = tiny_model_config(), MediaShape(mask_size=64, image_size=64)
    ckpt = save_policy(build_tiny_policy(cfg, tok, shape), tok, cfg, shape, tmp_path / "ckpt")
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "research" / "seg_prompt_probe.py"), "--ckpt", str(ckpt), "--data",
                           str(synthetic_root), "--train-rows", "24", "--test-rows", "12", "--fit-steps", "2",
                           "--threads", "1"], capture_output=True, text=True, timeout=600, cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    rows = [line.split(" | ") for line in proc.stdout.splitlines() if line.startswith("| checkpoint") or
            line.startswith("| refit")]
    assert [r[1] for r in rows] == ["hidden", "prompt", "hidden", "prompt"]
    for r in rows:
        assert 0.0 <= float(r[4]) <= 1.0 and 0.0 <= float(r[5]) <= 1.0  # probe accuracy and IoU are shares
    assert "refit step 2/2" in proc.stdout
