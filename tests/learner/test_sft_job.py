"""Stage 1 end to end on Ray Train (2 gloo workers, ZeRO-2): train, kill, --resume."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from learner.train_log import rows_by_step

ROOT = Path(__file__).resolve().parents[2]


def sft_command(ray_node, data_root, out_dir, *extra):
    return [
        sys.executable, "-m", "aurora_rl.cli", "train", "sft", "--config", str(ROOT / "configs/tiny/sft.yaml"),
        *extra, f"services.ray_address={ray_node.address}", f"data.root={data_root}", f"run.output_dir={out_dir}",
        "loss.distill=0", "teacher_path=null", "trainer.max_steps=6", "trainer.checkpoint_every=2",
        "trainer.batch_size_per_worker=2", "trainer.log_every=1",
    ]


def run(cmd, env, kill_after_step=None, timeout=600):
    """Run the CLI; with ``kill_after_step``, SIGKILL it once that step's progress line shows."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=ROOT)
    lines, deadline = [], time.monotonic() + timeout
    for line in proc.stdout:
        lines.append(line)
        if kill_after_step and f"step {kill_after_step}/6" in line:
            os.kill(proc.pid, signal.SIGKILL)
            break
        assert time.monotonic() < deadline, "".join(lines[-30:])
    proc.wait(timeout=60)
    return proc.returncode, "".join(lines)


def curve(run_dir: Path) -> dict[int, dict]:
    """Last logged metrics per step (a resumed run re-logs the steps after its checkpoint)."""
    return rows_by_step([run_dir / "metrics.jsonl"])


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_killed_run_resumes_at_its_checkpoint_and_continues_the_same_curve(ray_node, synthetic_root, tmp_path):
    from aurora_rl.model.sam_pretrain import pretrain_tiny_sam

    env = {**os.environ, **ray_node.client_env()}
    # a pretrained SAM named by a path relative to where the command runs, as a user types it: the
    # train workers run elsewhere
    pretrain_tiny_sam(synthetic_root, tmp_path / "tiny-sam", steps=2, batch=4, max_clips=4)
    sam = f"model.sam.path={os.path.relpath(tmp_path / 'tiny-sam', ROOT)}"
    with ThreadPoolExecutor(2) as pool:  # the reference run and the one to kill, side by side
        full = pool.submit(run, sft_command(ray_node, synthetic_root, tmp_path / "full", sam), env)
        killed = pool.submit(run, sft_command(ray_node, synthetic_root, tmp_path / "killed", sam), env,
                             kill_after_step=3)
        (code, out), (killed_code, _) = full.result(), killed.result()
    assert code == 0, out[-3000:]
    reference = curve(tmp_path / "full" / "tiny-sft")
    assert sorted(reference) == [1, 2, 3, 4, 5, 6]
    assert (tmp_path / "full" / "tiny-sft" / "checkpoint" / "aurora_model.json").exists()
    assert reference[6]["ce"] < reference[1]["ce"]

    assert killed_code == -signal.SIGKILL
    code, out = run(sft_command(ray_node, synthetic_root, tmp_path / "killed", "--resume", sam), env)
    assert code == 0, out[-3000:]
    run_dir = tmp_path / "killed" / "tiny-sft"
    assert f"[sft] resuming from {run_dir / 'ray_train'}" in out  # the driver names the checkpoint
    assert "resumed at step 2" in (run_dir / "logs" / "sft-rank0.log").read_text()  # rank 0 says where it is
    resumed = curve(run_dir)
    assert sorted(resumed) == [1, 2, 3, 4, 5, 6]
    for step in range(1, 7):
        for key in ("ce", "bce", "dice", "total"):
            assert resumed[step][key] == pytest.approx(reference[step][key], rel=1e-4), (step, key)


def test_rerun_without_resume_refuses_to_overwrite(ray_node, synthetic_root, tmp_path):
    (tmp_path / "tiny-sft" / "ray_train").mkdir(parents=True)
    env = {**os.environ, **ray_node.client_env()}
    code, out = run(sft_command(ray_node, synthetic_root, tmp_path), env)
    assert code != 0
    assert "pass --resume" in out
