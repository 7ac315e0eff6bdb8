"""The private Ray node: token auth on, job API reachable with the token, stopped by PID."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import psutil
import pytest

from aurora_rl.services.process import alive
from aurora_rl.services.ray_cluster import LocalRayNode


def _get(url: str, token: str | None = None):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=10)


def test_shared_node_runs_tasks_and_requires_the_token(ray_node):
    import ray

    @ray.remote(num_cpus=0)
    def square(x):
        return x * x

    assert ray.get([square.remote(i) for i in range(4)]) == [0, 1, 4, 9]
    with pytest.raises(urllib.error.HTTPError) as err:
        _get(ray_node.dashboard_url + "/api/version")
    assert err.value.code == 401
    token = ray_node.token_path.read_text()
    version = json.loads(_get(ray_node.dashboard_url + "/api/version", token).read())
    assert version["ray_version"].startswith("2.60")
    assert ray_node.token_path.stat().st_mode & 0o077 == 0  # token readable by its owner only


def test_stop_leaves_no_process_behind():
    node = LocalRayNode(num_cpus=1, include_dashboard=False).start()
    pids = node.pids()
    assert len(pids) >= 3  # ray start, gcs_server, raylet at least
    temp_dir = node.temp_dir
    node.stop()
    assert alive(pids) == []
    assert not temp_dir.exists()
    ours = [p for p in psutil.process_iter(["cmdline"]) if str(temp_dir) in " ".join(p.info["cmdline"] or [])]
    assert ours == []


def test_stop_also_stops_a_process_of_the_node_outside_its_tree():
    """A worker the raylet was still spawning at stop time is in no snapshot of the tree, and is
    re-parented once the raylet goes (CI saw two left over): stop() finds it by the temp dir it names."""
    import subprocess
    import sys

    node = LocalRayNode(num_cpus=1, include_dashboard=False).start()
    stray = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)", f"--temp-dir={node.temp_dir}"],
                             start_new_session=True)
    try:
        assert stray.pid not in node.pids()
        node.stop()
        assert stray.wait(timeout=10) is not None
    finally:
        stray.kill()


def test_a_node_that_died_on_its_own_keeps_its_logs(capsys):
    """`ray start --block` gone before stop() (killed here; it also ends when its raylet dies):
    stop() still stops the rest by PID, and keeps the node's temp dir (its logs; not its token)."""
    node = LocalRayNode(num_cpus=1, include_dashboard=False).start()
    pids = node.pids()
    node.proc.kill()
    node.proc.wait()
    temp_dir = node.temp_dir
    try:
        node.stop()
        assert alive(pids) == []
        assert (temp_dir / "ray-start.log").exists() and any(temp_dir.glob("session_*/logs/raylet*"))
        assert not (temp_dir / "auth_token").exists()
        assert f"the Ray node in {temp_dir} had exited on its own" in capsys.readouterr().err
    finally:
        import shutil

        shutil.rmtree(temp_dir, ignore_errors=True)


def test_a_node_s_ports_are_all_different():
    """``ray start`` refuses two components on one port; ports picked one at a time can coincide
    (it did: dashboard_agent_grpc and dashboard_agent_http both got 56191)."""
    from aurora_rl.services.process import free_ports

    ports = free_ports(200)
    assert len(set(ports)) == 200 and all(1024 < p < 65536 for p in ports)
