"""Session-wide services shared by every test: one private Redis, one private Ray node.

Both are started lazily (only by tests that ask for them) and stopped by PID at the end of
the session; ``pytest_sessionfinish`` fails the run if any process they started is still
alive afterwards.

``make test`` runs the suite on two pytest-xdist workers (``-n 2``), each with services of its
own and one compute thread per process (``OMP_NUM_THREADS``). Every module runs whole on one
worker (``pytest_xdist_make_scheduler``), so its module-scoped fixtures (a running GRPO job, say)
start once and its tests keep their order; the modules that share the served CoT teacher run on
one worker. Modules go out longest first, by the seconds recorded in ``tests/module_seconds.json``.

A test that injects a fault fills its row of the fault table (``fault_row``; ``bench/faults.py``).
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import tempfile
from pathlib import Path

import pytest

# Set before anything imports vLLM, DeepSpeed or transformers.
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
os.environ.setdefault("DS_ACCELERATOR", "cpu")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("RAY_DEDUP_LOGS", "0")
# One compute thread per process (inherited by the Ray nodes, servers and commands the tests
# start; Ray gives its actors one already): two xdist workers on two cores, each running torch
# with a spinning thread per core, slowed a SAM pretraining test from 18 s to 150 s.
os.environ.setdefault("OMP_NUM_THREADS", "1")
# the Redis passwords of the session's jobs (aurora_rl/services/job_file.py): not in the user's home
# (made here, then removed when the process that made it exits; xdist workers inherit it)
if "AURORA_RL_SECRETS" not in os.environ:
    os.environ["AURORA_RL_SECRETS"] = tempfile.mkdtemp(prefix="aurora-secrets-")
    atexit.register(shutil.rmtree, os.environ["AURORA_RL_SECRETS"], ignore_errors=True)

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


@pytest.fixture(scope="session")
def truth(synthetic_root):
    """The synthetic benchmark's ground truth at 32 x 32 masks, as a reward worker reads it."""
    from rewards.ground_truth import GroundTruth

    return GroundTruth(synthetic_root, None, 32)


@pytest.fixture(scope="session")
def uids(synthetic_root):
    """Four uids of the synthetic benchmark's train split."""
    from aurora_rl.data import refavs_layout as layout

    return [r.uid for r in layout.read_metadata(synthetic_root) if r.split == "train"][:4]


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
    # --enforce-eager: the served model is not compiled (the compile took 21 of its 60 s start).
    server = subprocess.Popen(
        [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(model), "--served-model-name",
         "teacher", "--host", "127.0.0.1", "--port", str(port), "--max-model-len", "2048", "--dtype", "float32",
         "--max-num-seqs", "8", "--enforce-eager", "--structured-outputs-config",
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


# The modules whose tests use ``teacher_endpoint``: one worker runs them all, so the served teacher
# starts once (``pytest_collection_modifyitems`` refuses a module that uses it and is not here).
TEACHER_MODULES = ("tests/prompts/test_cot_endpoint.py", "tests/test_real_rehearsal.py")

# Seconds each module took in a recorded run (``pytest --record-module-seconds tests/module_seconds.json``):
# the work units are handed out longest first, so the two workers finish together. A module not in
# the file counts as UNRECORDED_MODULE_S.
MODULE_SECONDS = Path(__file__).with_name("module_seconds.json")
UNRECORDED_MODULE_S = 30.0


def pytest_addoption(parser):
    parser.addoption("--record-module-seconds", metavar="PATH", default=None,
                     help="write the seconds each test module took (setup, call, teardown) to this JSON file")


def module_of(nodeid: str) -> str:
    return nodeid.split("::")[0]


def work_unit(nodeid: str) -> str:
    """What one worker runs whole: a module, or all the served teacher's modules."""
    module = module_of(nodeid)
    return "served-teacher" if module in TEACHER_MODULES else module


def pytest_xdist_make_scheduler(config, log):
    """(xdist controller) Each work unit runs whole on one worker, so its module-scoped fixtures (a
    running GRPO job, say) start once and its tests keep their order. Units go out in collection
    order, which ``pytest_collection_modifyitems`` makes longest first (xdist's own reorder, by the
    number of tests, would send the few long end-to-end tests last)."""
    from xdist.scheduler import LoadScopeScheduling

    class ByModule(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return work_unit(nodeid)

    config.option.loadscopereorder = False
    return ByModule(config, log)


def pytest_collection_modifyitems(config, items):
    """Work units longest first, by the recorded seconds of their modules; tests keep their order
    within a module."""
    for item in items:
        module = module_of(item.nodeid)
        if "teacher_endpoint" in item.fixturenames and module not in TEACHER_MODULES:
            raise pytest.UsageError(f"{module} uses teacher_endpoint: add it to TEACHER_MODULES in tests/conftest.py")
    recorded = json.loads(MODULE_SECONDS.read_text()) if MODULE_SECONDS.exists() else {}
    seconds: dict[str, float] = {}
    for module in {module_of(item.nodeid) for item in items}:
        unit = work_unit(module)
        seconds[unit] = seconds.get(unit, 0.0) + recorded.get(module, UNRECORDED_MODULE_S)
    items.sort(key=lambda item: -seconds[work_unit(item.nodeid)])  # stable: a module's order kept


_MODULE_SECONDS: dict[str, float] = {}  # the controller's (or the only process's) tally


def pytest_runtest_logreport(report):
    module = module_of(report.nodeid)
    _MODULE_SECONDS[module] = _MODULE_SECONDS.get(module, 0.0) + report.duration


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.when == "call":
        item.fault_call_passed = report.passed


@pytest.fixture
def fault_row(request):
    """One row of the fault table (``bench/faults.py``, docs/RELIABILITY.md) for a test that injects
    a fault: fault, lost, duplicated, dropped (and counted), recovery_s, each figure counted from
    what the run did; one the test does not count stays None, a "-" in the table. When
    ``AURORA_FAULT_TABLE`` names a file, the row is appended to it as a JSON line with whether the
    test passed."""
    row = {"fault": request.node.name, "lost": None, "duplicated": None, "dropped": None, "recovery_s": None}
    if "job" in request.fixturenames:  # a fault of a running GRPO job: at which policy lag bound
        row["k"] = request.getfixturevalue("job").cfg.learner.max_policy_lag
    yield row
    path = os.environ.get("AURORA_FAULT_TABLE")
    if path:
        row.update(test=request.node.nodeid, survived=bool(getattr(request.node, "fault_call_passed", False)))
        with open(path, "a") as f:
            f.write(json.dumps(row) + "\n")


_LEFTOVER: list[str] = []  # the controller's: what its workers reported


def pytest_testnodedown(node, error):
    """(xdist controller) A worker's leftover processes, as its ``pytest_sessionfinish`` saw them."""
    _LEFTOVER.extend(getattr(node, "workeroutput", {}).get("leftover_processes", []))


def pytest_sessionfinish(session, exitstatus):
    from aurora_rl.services.process import alive

    leftover = [str(pid) for pid in alive(_STARTED_PIDS)]
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:  # an xdist worker: the controller reports it
        workeroutput["leftover_processes"] = leftover
        return
    leftover += _LEFTOVER
    record = session.config.getoption("--record-module-seconds")
    if record:
        Path(record).write_text(json.dumps({m: round(s, 1) for m, s in sorted(_MODULE_SECONDS.items())}, indent=1) + "\n")
    if leftover:
        session.config.pluginmanager.get_plugin("terminalreporter").write_line(
            f"ERROR: processes started by the test services are still running: {', '.join(leftover)}", red=True
        )
        session.exitstatus = 1
