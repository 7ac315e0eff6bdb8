"""bench/gpu_model_check.py runs end to end with --tiny on the CPU and reports what it promises."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "gpu_model_check.py"


def test_tiny_run_on_cpu_reports_every_measurement(tmp_path):
    out = tmp_path / "results.json"
    proc = subprocess.run([sys.executable, str(SCRIPT), "--tiny", "--device", "cpu", "--reps", "1", "--out", str(out)],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["header"]["tiny"] is True and report["header"]["dtype"] == "torch.bfloat16"
    by_name = {r["backbone"]: r for r in report["results"]}
    assert set(by_name) == {"videollama2-av", "qwen2.5-omni"}
    # tiny clips: 4 frames at 56 px; VideoLLaMA2: 4x4 SigLIP grid, STC halves t, h, w; BEATs: 96 fbank frames
    assert by_name["videollama2-av"]["video_tokens"] == 2 * 2 * 2
    assert by_name["videollama2-av"]["audio_tokens"] == 96 // 16 * 8
    # Omni: 2 frame pairs x (56 / 28)^2 merged patches; 98 mel frames -> 49 -> 24 tokens
    assert by_name["qwen2.5-omni"]["video_tokens"] == 2 * 4
    assert by_name["qwen2.5-omni"]["audio_tokens"] == 24
    for r in by_name.values():
        assert 0 < r["trainable_B"] < sum(r["params_B"].values())
        for key in ("vision_s_per_clip", "audio_s_per_clip", "sam_encode_s_per_clip", "forward_b1_s_per_clip",
                    "forward_b4_s_per_clip", "train_step_b2_s_per_clip"):
            assert r[key] > 0, key
        assert r["forward_b1_peak_GB"] is None  # memory is reported on the GPU only
        assert r["sequence_tokens"] == 24 + r["video_tokens"] + r["audio_tokens"] + 20
