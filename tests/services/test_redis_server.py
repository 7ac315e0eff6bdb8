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
