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


def pytest_sessionfinish(session, exitstatus):
    from aurora_rl.services.process import alive

    leftover = alive(_STARTED_PIDS)
    if leftover:
        session.config.pluginmanager.get_plugin("terminalreporter").write_line(
            f"ERROR: processes started by the test services are still running: {leftover}", red=True
        )
        session.exitstatus = 1
