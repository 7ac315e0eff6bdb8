"""``ray job submit`` to a running ``ray start --head`` node (token auth on): the helpers the
rehearsal of the real path submits its stages with, and the token check."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path


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


# Stages submitted as a user submits them (console, library logs in files): tests/test_real_rehearsal.py.
