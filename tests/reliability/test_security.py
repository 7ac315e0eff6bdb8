"""Security: the queue's Redis is never open, Ray is behind its token, the queue carries only
schema-checked msgpack (nothing unpickled or executed), and weights reach vLLM through a named
worker-extension method, never a pickled callable."""

from __future__ import annotations

import ast
import ipaddress
import os
import pickle
import signal
import subprocess
import uuid
from pathlib import Path

import numpy as np
import psutil
import pytest
import redis
import yaml

from aurora_rl.record_stream import RecordStream
from aurora_rl.records import RecordLimits
from aurora_rl.records import RolloutRecord, encode

ROOT = Path(__file__).resolve().parents[2]
CLUSTER_FILES = [p for p in (ROOT / "cluster.yaml", ROOT / "cluster-onprem.yaml") if p.exists()]
CODE_DIRS = ("aurora_rl", "actors", "learner", "rewards", "bench", "scripts", "cluster", "configs")


def ray_start_commands(path: Path) -> list[str]:
    cfg = yaml.safe_load(path.read_text())
    commands = cfg.get("head_start_ray_commands", []) + cfg.get("worker_start_ray_commands", [])
    return [c for c in commands if "ray start" in c]


@pytest.mark.skipif(not CLUSTER_FILES, reason="no cluster launcher config in this checkout")
@pytest.mark.parametrize("path", CLUSTER_FILES, ids=lambda p: p.name)
def test_every_cluster_node_starts_ray_with_token_auth(path):
    commands = ray_start_commands(path)
    assert any("--head" in c for c in commands) and any("--address" in c for c in commands)
    for command in commands:  # the dashboard and job API of every node answer only with the token
        assert "RAY_AUTH_MODE=token" in command, command
        assert "RAY_AUTH_MODE=disabled" not in command


@pytest.mark.skipif(not (ROOT / "cluster" / "start_redis.sh").exists(), reason="no cluster Redis script")
def test_cluster_redis_listens_on_a_private_address_with_a_password(tmp_path, started_pids):
    """cluster/start_redis.sh as the head runs it: one private (or loopback) address, never a
    wildcard, a password on, the config readable by its owner only."""
    from aurora_rl.services.process import alive, free_port, wait_until

    port = free_port()
    env = {**os.environ, "HOME": str(tmp_path), "AURORA_REDIS_PORT": str(port)}
    pid_file = tmp_path / ".aurora" / "redis" / "redis.pid"
    try:
        run = subprocess.run(["bash", str(ROOT / "cluster" / "start_redis.sh")], env=env, capture_output=True,
                             text=True, timeout=60)
        assert run.returncode == 0, run.stderr
        wait_until(pid_file.exists, 10, "redis pid file")
        pid = int(pid_file.read_text())
        started_pids.append(pid)
        wait_until(lambda: any(c.status == psutil.CONN_LISTEN for c in psutil.Process(pid).net_connections()),
                   10, "redis to listen")
        listening = {c.laddr.ip for c in psutil.Process(pid).net_connections(kind="inet")
                     if c.status == psutil.CONN_LISTEN}
        assert listening and not listening & {"0.0.0.0", "::", "*"}, listening
        assert all(ipaddress.ip_address(ip).is_private for ip in listening), listening  # loopback is private too
        (ip,) = listening
        with pytest.raises(redis.AuthenticationError):
            redis.Redis(host=ip, port=port).ping()
        conf = tmp_path / ".aurora" / "redis" / "redis.conf"
        assert conf.stat().st_mode & 0o077 == 0
        assert any(line.split()[0] == "requirepass" and len(line.split()[1]) >= 32
                   for line in conf.read_text().splitlines() if line.strip())
    finally:
        if pid_file.exists():
            pid = int(pid_file.read_text())
            os.kill(pid, signal.SIGTERM)
            wait_until(lambda: not alive([pid]), 15, "redis-server to stop")


def python_files():
    for top in CODE_DIRS:
        yield from (ROOT / top).rglob("*.py")


def test_nothing_allows_vllms_insecure_serialization():
    """Not set in code, configs, scripts or the cluster files (docstrings may explain why not)."""
    name = "VLLM_ALLOW_INSECURE_SERIALIZATION"
    for path in python_files():
        tree = ast.parse(path.read_text())
        docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                      if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef)) and node.body
                      and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
                assert name not in node.value, f"{path}:{node.lineno}"
    others = [p for top in CODE_DIRS for p in (ROOT / top).rglob("*") if p.suffix in (".yaml", ".sh", ".toml")]
    for path in others + CLUSTER_FILES + [ROOT / "Makefile"]:
        assert name not in path.read_text(), path


def test_vllm_weights_arrive_through_a_named_worker_method():
    """Every ``collective_rpc`` names a method (no callable travels pickled); the engine that
    receives weights is built with the worker extension that defines that method."""
    calls = []
    for path in python_files():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "collective_rpc":
                calls.append((path, node))
    assert calls
    for path, node in calls:
        method = node.args[0] if node.args else None
        assert isinstance(method, ast.Constant) and isinstance(method.value, str), f"{path}:{node.lineno}"
    from actors.policy_engine import WORKER_EXTENSION
    from actors.vllm_worker_extension import WeightUpdateExtension

    # every call goes to a PolicyEngine's vLLM (benchmarks use the engine's), built with the extension
    assert WORKER_EXTENSION == "actors.vllm_worker_extension.WeightUpdateExtension"
    for path, node in calls:
        assert callable(getattr(WeightUpdateExtension, node.args[0].value, None)), f"{path}:{node.lineno}"


class _Payload:
    """Unpickling this would create a file: proof that something executed the payload."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return open, (self.marker, "w")


def test_queue_records_are_schema_checked_never_unpickled(redis_server, tmp_path, fault_row):
    fault_row["fault"] = "pickled payload / oversized record on the queue: refused, never executed"
    stream = RecordStream(redis_server.client(), f"test:sec:{uuid.uuid4().hex}", "scorers", RecordLimits(max_bytes=4096))
    stream.ensure_group()
    marker = tmp_path / "executed"
    good = RolloutRecord(uid="v_dog_1", group_id="g", sample_index=0, group_size=1, policy_version=0,
                         prompt_token_ids=np.arange(3), completion_token_ids=np.arange(2),
                         sampling_logprobs=np.zeros(2), completion_text="it is [SEG] .")
    stream.publish_raw(pickle.dumps(_Payload(str(marker))))
    stream.publish(RolloutRecord(**{**good.__dict__, "completion_text": "x" * 10_000}))  # oversized
    stream.publish(good)
    got = stream.read("w0", count=10, block_ms=100)
    sent = [message_id for message_id, _ in stream.client.xrange(stream.stream)]
    dead = stream.client.xrange(stream.dead_stream)
    handled = [d.message_id for d in got] + [f[b"id"] for _, f in dead]  # handed out or dead-lettered
    fault_row.update(lost=len(set(sent) - set(handled)), duplicated=len(handled) - len(set(handled)),
                     dropped=len(dead))
    assert len(sent) == 3 and sorted(handled) == sorted(sent)  # each message handed out or dead-lettered, once
    assert [d.record.completion_text for d in got] == ["it is [SEG] ."]
    assert not marker.exists()
    assert stream.rejected == 2  # counted
    reasons = [f[b"reason"].decode() for _, f in dead]
    assert "not a msgpack record" in reasons[0] and "exceeds the limit of 4096" in reasons[1], reasons
    assert len(encode(good)) < 4096
    stream.ack([d.message_id for d in got])
    assert stream.pending() == 0


def test_the_redis_url_read_from_a_file_only_its_owner_may_read(redis_server, tmp_path):
    """``services.redis_url=file:<path>`` (what cluster/start_redis.sh writes): the password is on
    no command line and in no job entrypoint; a file others may read is refused, naming chmod. The
    private server's own config, which holds the password, is its owner's only."""
    import stat

    from aurora_rl.services import read_redis_url

    path = tmp_path / "redis_url"
    path.write_text(redis_server.url + "\n")
    path.chmod(0o644)
    with pytest.raises(PermissionError, match=f"others may read it .mode 644.; chmod 600 {path}"):
        read_redis_url(f"file:{path}")
    path.chmod(0o600)
    assert read_redis_url(f"file:{path}") == redis_server.url
    assert read_redis_url(redis_server.url) == redis_server.url and read_redis_url(None) is None
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_redis_url(f"file:{tmp_path / 'nothing'}")
    assert stat.S_IMODE((redis_server.workdir / "redis.conf").stat().st_mode) == 0o600


def test_a_crafted_deepspeed_state_file_is_refused_and_runs_nothing(tmp_path):
    """A ``mp_rank_00_model_states.pt`` whose pickle creates a folder when loaded: DeepSpeed's own
    loader would run it; the learner ranks' and SFT workers' engines load with weights only
    (``learner/safe_load.py``), so it is refused by name and the folder never appears. A genuine
    ZeRO-2 resume through the same loader: ``tests/grpo/test_grpo_job.py::test_resume_from_a_checkpoint_repeats_the_same_losses``,
    ``tests/learner/test_sft_job.py``."""
    import torch

    from learner.safe_load import UnsafeCheckpoint, load_weights_only

    ran = tmp_path / "code-ran-here"

    class Payload:
        def __reduce__(self):
            return (os.makedirs, (str(ran),))

    path = tmp_path / "mp_rank_00_model_states.pt"
    torch.save({"module": {"w": torch.zeros(2)}, "extra": Payload()}, path)
    with pytest.raises(UnsafeCheckpoint, match=f"{path}: refused, it holds objects that are not tensors"):
        load_weights_only(str(path))
    assert not ran.exists()
    torch.save({"module": {"w": torch.ones(2)}, "step": 3}, path)  # tensors and plain data: read
    assert load_weights_only(str(path))["step"] == 3


@pytest.mark.parametrize("address", ["8.8.8.8", "172.32.0.1", "2606:4700::1111"])
def test_cluster_redis_refuses_a_public_address(tmp_path, address):
    env = {**os.environ, "HOME": str(tmp_path), "AURORA_REDIS_BIND": address}
    run = subprocess.run(["bash", str(ROOT / "cluster" / "start_redis.sh")], env=env, capture_output=True, text=True,
                         timeout=60)
    assert run.returncode == 1 and f"{address} is not a private address; refusing" in run.stderr
    assert not (tmp_path / ".aurora" / "redis" / "redis.conf").exists() and not (tmp_path / ".aurora" / "redis_url").exists()
