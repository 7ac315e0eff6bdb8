"""Session-wide services shared by every test: one private Redis, one private Ray node.

Both are started lazily (only by tests that ask for them) and stopped by PID at the end of
the session; ``pytest_sessionfinish`` fails the run if any process they started is still
alive afterwards.
"""

from __future__ import annotations

import os

import pytest

# Set before anything imports vLLM, DeepSpeed or transformers.
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
os.environ.setdefault("DS_ACCELERATOR", "cpu")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("RAY_DEDUP_LOGS", "0")

_STARTED_PIDS: list[int] = []


@pytest.fixture(scope="session")
def started_pids() -> list[int]:
    """The PIDs ``pytest_sessionfinish`` checks: a test that starts services of its own (a
    two-node Ray cluster, say) adds their PIDs here before it stops them."""
    return _STARTED_PIDS


@pytest.fixture(scope="session")
def redis_server():
    from aurora_rl.services.redis_server import RedisServer

    server = RedisServer().start()
    _STARTED_PIDS.append(server.pid)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def ray_node():
    """A private Ray head node (8 logical CPUs on the 2 real cores) with this driver connected."""
    import ray

    from aurora_rl.services.ray_cluster import LocalRayNode

    node = LocalRayNode(num_cpus=8).start()
    try:
        node.connect(log_to_driver=False)
        yield node
    finally:
        _STARTED_PIDS.extend(node.pids())
        ray.shutdown()
        node.stop()


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory):
    """A small synthetic Ref-AVS benchmark (40 videos), generated once per session. Read-only."""
    from aurora_rl.data.synthetic import generate_benchmark

    root = tmp_path_factory.mktemp("synthetic")
    generate_benchmark(root, videos=40, seed=0)
    return root


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def teacher_endpoint(tmp_path_factory):
    """The base URL of a vLLM OpenAI-compatible server on this machine, serving a tiny random
    multimodal model as ``teacher`` (tests/tiny_blip2.py), the way a CoT teacher is served."""
    import json
    import subprocess
    import sys
    import time
    import urllib.request

    from tests.tiny_blip2 import write_tiny_blip2

    folder = tmp_path_factory.mktemp("teacher")
    model = write_tiny_blip2(folder / "blip2")
    port = free_port()
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_CPU_OMP_THREADS_BIND": f"0-{os.cpu_count() - 1}",
           "VLLM_ENABLE_V1_MULTIPROCESSING": "1"}
    log = (folder / "server.log").open("w")
    # Small random models wander in JSON whitespace: the server's own option turns that off.
    server = subprocess.Popen(
        [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(model), "--served-model-name",
         "teacher", "--host", "127.0.0.1", "--port", str(port), "--max-model-len", "2048", "--dtype", "float32",
         "--max-num-seqs", "8", "--structured-outputs-config",
         json.dumps({"backend": "xgrammar", "disable_any_whitespace": True})],
        stdout=log, stderr=subprocess.STDOUT, env=env)
    _STARTED_PIDS.append(server.pid)
    url = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + 300
    try:
        while True:
            try:
                urllib.request.urlopen(url + "/models", timeout=2).read()
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    pytest.fail("the vLLM server did not start:\n" + (folder / "server.log").read_text()[-3000:])
                time.sleep(2)
        yield url
    finally:
        server.terminate()
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()


def pytest_sessionfinish(session, exitstatus):
    from aurora_rl.services.process import alive

    leftover = alive(_STARTED_PIDS)
    if leftover:
        session.config.pluginmanager.get_plugin("terminalreporter").write_line(
            f"ERROR: processes started by the test services are still running: {leftover}", red=True
        )
        session.exitstatus = 1
