"""The setup step is idempotent and fast; ``aurora-rl services up`` stops what it started."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from aurora_rl.services.process import alive, process_tree, stop_pids

ROOT = Path(__file__).resolve().parents[2]


def test_setup_rerun_with_nothing_to_do_is_fast():
    def setup():
        return subprocess.run(["bash", "scripts/setup.sh"], cwd=ROOT, capture_output=True, text=True, timeout=900)

    assert setup().returncode == 0  # brings .venv up to date if a tracked input changed
    started = time.monotonic()
    run = setup()
    elapsed = time.monotonic() - started
    assert run.returncode == 0, run.stderr
    assert "up to date" in run.stdout
    assert elapsed < 10


@pytest.mark.parametrize("parent_ignores_sigint", [False, True])
def test_services_up_starts_both_and_stops_everything_on_interrupt(parent_ignores_sigint):
    """Also when started with SIGINT ignored (inherited from a parent that ignores it): Ctrl-C
    must still stop both services."""
    ignore = (lambda: signal.signal(signal.SIGINT, signal.SIG_IGN)) if parent_ignores_sigint else None
    proc = subprocess.Popen(
        [sys.executable, "-m", "aurora_rl.cli", "services", "up", "--num-cpus", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT, preexec_fn=ignore,
    )
    lines = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        lines.append(line)
        if "Ctrl-C stops both" in line or not line:
            break
    text = "".join(lines)
    assert "redis-server pid" in text and "Ray head" in text and "RAY_AUTH_TOKEN_PATH" in text, text
    assert ", dashboard http://" in text and "The dashboard's login asks for a token: it is in " in text, text
    tree = process_tree(proc.pid)
    pids = [p.pid for p in tree][1:]
    try:
        assert len(pids) >= 3
        os.kill(proc.pid, signal.SIGINT)
        out, _ = proc.communicate(timeout=120)
        assert proc.returncode == 0, out
        assert "stopped" in out
        assert alive(pids) == []
    finally:  # a failed run must not leave Redis and Ray behind for the rest of the suite
        stop_pids(tree)
