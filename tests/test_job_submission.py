"""Stages submitted with ``ray job submit`` to a running ``ray start --head`` node (token auth on)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RAY = str(Path(sys.executable).with_name("ray"))


def submit(ray_node, *entrypoint, env_extra=None, timeout=900):
    env = {**os.environ, **ray_node.client_env(), **(env_extra or {})}
    return subprocess.run([RAY, "job", "submit", "--address", ray_node.dashboard_url, "--working-dir", str(ROOT),
                           "--", sys.executable, "-m", "aurora_rl.cli", *entrypoint],
                          env=env, capture_output=True, text=True, timeout=timeout, cwd=ROOT)


def job_console(stdout: str) -> list[str]:
    """The submitted job's own console: what ``ray job submit`` tails between its banners, after
    Ray's job manager has set the job up and started the entrypoint."""
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("Running entrypoint for job")) + 1
    end = next(i for i in range(start, len(lines)) if "cli.py" in lines[i] and "-----" in lines[i])  # its banner
    return lines[start:end]


def assert_shows_the_job_only(console: list[str]) -> None:
    """No library line on the console: no INFO line, no worker's forwarded output."""
    library = [line for line in console if re.search(r"\bINFO\b|^\(\w+ pid=\d+", line)]
    assert library == [], library[:5]


def test_submission_without_the_token_is_refused(ray_node):
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH")}
    env["RAY_AUTH_MODE"] = "disabled"
    run = subprocess.run([RAY, "job", "list", "--address", ray_node.dashboard_url], env=env, capture_output=True,
                         text=True, timeout=120)
    assert run.returncode != 0
    assert "401" in run.stdout + run.stderr or "Authentication" in run.stdout + run.stderr


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_sft_stage_runs_as_a_submitted_job(ray_node, synthetic_root, tmp_path):
    run = submit(ray_node, "train", "sft", "--config", "configs/tiny/direct.yaml", f"data.root={synthetic_root}",
                 f"run.output_dir={tmp_path}", "trainer.max_steps=2", "trainer.batch_size_per_worker=2")
    assert run.returncode == 0, (run.stdout + run.stderr)[-3000:]
    assert "succeeded" in run.stdout + run.stderr
    assert (tmp_path / "tiny-direct" / "checkpoint" / "aurora_model.json").exists()
    console = job_console(run.stdout)
    assert any(line.startswith("[direct] step 2/2") for line in console), console  # printed by the driver
    assert_shows_the_job_only(console)
    logs = tmp_path / "tiny-direct" / "logs"
    assert any(line.startswith(f"[direct] library logs in {logs}: ") for line in console)
    assert "[direct] step 2/2" in (logs / "direct-rank0.log").read_text()  # what rank 0 wrote went to its file


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_grpo_stage_runs_as_a_submitted_job(ray_node, synthetic_root, tmp_path):
    """The submitted driver starts its own private Redis and runs the whole stage-3 loop."""
    from aurora_rl.model.build import MediaShape
    from aurora_rl.model.checkpoint import save_policy
    from tests.model.tiny_policy import make_policy, tiny_model_config

    policy, tok = make_policy(seed=2)
    ckpt = save_policy(policy, tok, tiny_model_config(), MediaShape(128, 64, 64), tmp_path / "start")
    run = submit(ray_node, "train", "grpo", "--config", "configs/tiny/grpo.yaml", f"data.root={synthetic_root}",
                 f"run.output_dir={tmp_path}", f"model.path={ckpt}", "learner.steps=1", "learner.prompts_per_step=2",
                 "rollout.num_actors=1", "reward.num_workers=1", "rollout.sampling.max_new_tokens=8")
    assert run.returncode == 0, (run.stdout + run.stderr)[-3000:]
    assert "[grpo] step 1/1" in run.stdout
    assert (tmp_path / "tiny-grpo" / "checkpoint" / "aurora_model.json").exists()
    assert_shows_the_job_only(job_console(run.stdout))
    logs = tmp_path / "tiny-grpo" / "logs"
    assert {"rollout-0.log", "scorer-0.log", "learner-0.log", "learner-1.log"} <= {p.name for p in logs.iterdir()}
    assert "INFO" in (logs / "rollout-0.log").read_text(errors="replace")  # vLLM's lines: in the file
