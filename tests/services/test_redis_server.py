"""The private redis-server: loopback only, password on, AOF replay after a crash, nothing left behind."""

from __future__ import annotations

import time

import psutil
import pytest
import redis

from aurora_rl.services.redis_server import RedisServer


def test_shared_server_requires_password_and_binds_loopback(redis_server):
    assert redis_server.client().ping()
    anonymous = redis.Redis(host="127.0.0.1", port=redis_server.port)
    with pytest.raises(redis.AuthenticationError):
        anonymous.ping()
    conns = psutil.Process(redis_server.pid).net_connections(kind="tcp")
    listening = [c.laddr.ip for c in conns if c.status == psutil.CONN_LISTEN]
    assert listening and all(ip == "127.0.0.1" for ip in listening)


def test_stop_leaves_no_process_and_removes_its_dir():
    server = RedisServer().start()
    pid, workdir = server.pid, server.workdir
    assert psutil.pid_exists(pid)
    server.stop()
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert not workdir.exists()


def test_stopped_even_when_the_body_raises():
    with pytest.raises(RuntimeError, match="boom"):
        with RedisServer() as server:
            pid = server.pid
            raise RuntimeError("boom")
    assert not psutil.pid_exists(pid)


def test_crash_and_restart_replays_the_append_only_file(tmp_path):
    server = RedisServer(workdir=tmp_path).start()
    try:
        client = server.client()
        client.set("kept", "yes")
        client.xadd("s", {"r": b"1"})
        time.sleep(1.2)  # appendfsync everysec
        port = server.port
        server.crash()
        server.start()
        assert server.port == port
        client = server.client()
        assert client.get("kept") == b"yes"
        assert client.xlen("s") == 1
    finally:
        server.stop()
    assert (tmp_path / "redis.conf").exists()  # a directory passed in by the caller is kept


def test_a_command_stopped_with_sigterm_still_stops_its_redis(tmp_path):
    """`kill` / `ray job stop` send SIGTERM; the CLI turns it into an exit that unwinds `with` blocks."""
    import signal
    import subprocess
    import sys
    from pathlib import Path

    script = ("import time\n"
              "from aurora_rl.cli import exit_on_sigterm\n"
              "from aurora_rl.services.redis_server import RedisServer\n"
              "exit_on_sigterm()\n"
              "with RedisServer() as server:\n"
              "    print(server.pid, server.workdir, flush=True)\n"
              "    time.sleep(120)\n")
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, cwd=root)
    try:
        pid, workdir = proc.stdout.readline().split()
        assert psutil.pid_exists(int(pid))
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 128 + signal.SIGTERM
        assert not psutil.pid_exists(int(pid)) or psutil.Process(int(pid)).status() == psutil.STATUS_ZOMBIE
        assert not Path(workdir).exists()
    finally:
        proc.kill()


@pytest.mark.timeout(180)
def test_a_driver_connected_to_its_private_ray_node_still_unwinds_on_sigterm():
    """``ray.init`` puts Ray's own SIGTERM handler in the driver, which ends the process without
    unwinding; ``run_services`` puts the CLI's back, so the private Redis and Ray node stop too."""
    import contextlib
    import os
    import signal
    import subprocess
    import sys
    from pathlib import Path

    script = ("import time\n"
              "from aurora_rl.cli import exit_on_sigterm\n"
              "from aurora_rl.config.schema import ServicesConfig\n"
              "from aurora_rl.services import run_services\n"
              "exit_on_sigterm()\n"
              "with run_services(ServicesConfig(), log=lambda line: print(line, flush=True)) as services:\n"
              "    print(services.redis_url, flush=True)\n"
              "    time.sleep(150)\n")
    root = Path(__file__).resolve().parents[2]
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}  # the suite's shared node: not this one
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, cwd=root, env=env)
    started = []
    try:
        said = [proc.stdout.readline()]  # the services' own lines, then the URL
        while said[-1] and not said[-1].startswith("redis://"):
            said.append(proc.stdout.readline())
        assert said[-1].startswith("redis://"), said
        # the console says how to open the dashboard: its URL and the token file its login asks for
        assert any("; dashboard http://" in line and "(its login asks for the token in " in line for line in said), said
        started = psutil.Process(proc.pid).children(recursive=True)
        names = " ".join(p.name() for p in started)
        assert "redis-server" in names and "raylet" in names, names
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 128 + signal.SIGTERM
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE
                                                  for p in started):
            time.sleep(0.5)
        left = [p for p in started if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
        assert not left, [(p.pid, p.name()) for p in left]
    finally:
        proc.kill()
        for p in started:  # a failed check must not leave the child's services running
            with contextlib.suppress(psutil.Error):
                p.kill()
