"""A two-node Ray cluster on one machine runs the tiny GRPO job submitted with ``ray job submit``.

    head node    learner_gpu: 2, reward_cpu: 2   (CPU stand-ins for the learner node type + head)
    worker node  rollout_gpu: 2                  (a CPU stand-in for a rollout node type)

The job's placement (the defaults of configs/tiny/grpo.yaml) asks for those resources, so rollout
actors must land on the worker node and learner ranks and reward workers on the head. While it
runs: the autoscaling rule grows the rollout pool from 1 to 2 actors (2 prompts per step, at most
1 per actor), ``aurora-rl scale`` takes it down to 1 and back up to 2; afterwards every record
was sampled, scored and learned exactly once, and the GRPO metrics were on the nodes' metrics
endpoints (every one the Grafana dashboard plots).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from aurora_rl.services.process import wait_until
from aurora_rl.services.ray_cluster import LocalRayNode
from tests.cluster.test_grafana_dashboard import GRAFANA, METRIC, dashboard_metrics

ROOT = Path(__file__).resolve().parents[2]
RAY = str(Path(sys.executable).with_name("ray"))
STEPS, PROMPTS, G = 24, 2, 3  # tiny steps take about a second: room for the two scale requests


@pytest.fixture
def two_nodes(started_pids):
    env = {"RAY_metrics_report_interval_ms": "1000"}  # metrics reach the endpoints within seconds
    head = LocalRayNode(num_cpus=8, resources={"learner_gpu": 2, "reward_cpu": 2}, env=env)
    worker = None
    try:
        head.start()
        worker = LocalRayNode(head_address=head.address, token_path=head.token_path, num_cpus=6,
                              resources={"rollout_gpu": 2}, env=env).start()
        wait_until(lambda: len(alive_nodes(head)) == 2, 120, "the worker node to register with the head")
        yield head, worker
    finally:
        for node in (worker, head):
            if node is not None:
                started_pids.extend(node.pids())
                node.stop()


class MetricsWatcher(threading.Thread):
    """Scrapes the nodes' metrics endpoints every 2 s and remembers every aurora metric seen."""

    def __init__(self, ports: list[int]):
        super().__init__(daemon=True)
        self.ports = ports
        self.seen: set[str] = set()
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(2.0):
            for port in self.ports:
                try:
                    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
                except OSError:
                    continue
                self.seen |= set(METRIC.findall(text))


def ray_list(head, kind: str) -> list[dict]:
    out = subprocess.run([RAY, "list", kind, "--address", head.dashboard_url, "--format", "json", "--detail",
                          "--limit", "1000"], env={**os.environ, **head.client_env()}, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def alive_nodes(head) -> list[dict]:
    return [n for n in ray_list(head, "nodes") if n["state"] == "ALIVE"]


def cli(*args):
    run = subprocess.run([sys.executable, "-m", "aurora_rl.cli", *args], capture_output=True, text=True,
                         timeout=120, cwd=ROOT)
    assert run.returncode == 0, run.stderr
    return run.stdout


def wait_for_row(metrics: Path, job: subprocess.Popen, log: Path, accept, after: int, timeout_s: float = 600) -> dict:
    """The first metrics row past step ``after`` that ``accept`` takes (the job must still run)."""
    from learner.train_log import rows_by_step

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        rows = rows_by_step([metrics]) if metrics.exists() else {}
        for step in sorted(s for s in rows if s > after):
            if accept(rows[step]):
                return rows[step]
        assert job.poll() is None, "the job ended before the row arrived:\n" + log.read_text()[-3000:]
        time.sleep(0.25)
    raise TimeoutError("no matching metrics row")


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_grpo_job_on_two_nodes_places_roles_and_scales_rollout(two_nodes, redis_server, synthetic_root, tmp_path):
    from aurora_rl.model.build import MediaShape
    from aurora_rl.model.checkpoint import save_policy
    from aurora_rl.records import decode
    from tests.model.tiny_policy import make_policy, tiny_model_config

    head, worker = two_nodes
    policy, tok = make_policy(seed=2)
    ckpt = save_policy(policy, tok, tiny_model_config(), MediaShape(128, 64, 64), tmp_path / "start")
    run_dir = tmp_path / "two-node"
    watcher = MetricsWatcher([head.metrics_port, worker.metrics_port])
    watcher.start()
    log = open(tmp_path / "submit.log", "w")
    job = subprocess.Popen(
        [RAY, "job", "submit", "--address", head.dashboard_url, "--working-dir", str(ROOT), "--",
         sys.executable, "-m", "aurora_rl.cli", "train", "grpo", "--config", "configs/tiny/grpo.yaml",
         f"data.root={synthetic_root}", f"run.output_dir={tmp_path}", "run.name=two-node", f"model.path={ckpt}",
         f"services.redis_url={redis_server.url}", f"learner.steps={STEPS}", f"learner.prompts_per_step={PROMPTS}",
         f"rollout.sampling.group_size={G}", "rollout.sampling.max_new_tokens=8", "learner.num_ranks=2",
         "reward.num_workers=1", "rollout.num_actors=1", "learner.checkpoint_every=100",
         "placement.autoscale.enabled=true", "placement.autoscale.max_prompts_per_actor=1",
         "placement.autoscale.max_actors=2", "placement.ready_timeout_s=120"],
        env={**os.environ, **head.client_env()}, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    try:
        metrics = run_dir / "metrics.jsonl"
        grown = wait_for_row(metrics, job, tmp_path / "submit.log", lambda r: r["rollout_actors"] == 2, after=0)  # the autoscaling rule
        cli("scale", "--run", str(run_dir), "--rollout", "1")
        down = wait_for_row(metrics, job, tmp_path / "submit.log", lambda r: r["rollout_actors"] == 1, after=grown["step"])
        cli("scale", "--run", str(run_dir), "--rollout", "2")
        up = wait_for_row(metrics, job, tmp_path / "submit.log", lambda r: r["rollout_actors"] == 2, after=down["step"])
        assert job.wait(timeout=900) == 0, (tmp_path / "submit.log").read_text()[-4000:]
    finally:
        if job.poll() is None:
            job.kill()
        log.close()
        watcher.done.set()
    output = (tmp_path / "submit.log").read_text()
    assert "succeeded" in output and f"[grpo] step {STEPS}/{STEPS}" in output, output[-3000:]
    assert "(typed placement)" in output
    assert up["step"] <= STEPS

    # Placement: rollout actors (all 3 ever created) on the worker node, learner ranks and reward
    # workers on the head.
    nodes = {n["node_id"]: n for n in ray_list(head, "nodes")}
    worker_id = next(i for i, n in nodes.items() if "rollout_gpu" in n["resources_total"])
    head_id = next(i for i, n in nodes.items() if "learner_gpu" in n["resources_total"])
    assert worker_id != head_id
    actors = ray_list(head, "actors")
    where = {}
    for a in actors:
        where.setdefault(a["class_name"], []).append(a["node_id"])
    assert len(where["RolloutActor"]) == 3 and set(where["RolloutActor"]) == {worker_id}
    assert len(where["LearnerRank"]) == 2 and set(where["LearnerRank"]) == {head_id}
    assert set(where["RewardWorker"]) == {head_id}
    job_file = json.loads((run_dir / "job.json").read_text())
    assert job_file["placement"] == "typed" and set(job_file["workers"]["rollout"].values()) == {worker_id}
    assert set(job_file["workers"]["learner"]) == {head_id}
    status = cli("status", "--run", str(run_dir))
    assert f"step {STEPS}  policy version {STEPS}  rollout actors 2" in status
    assert f"rollout 2 on node {worker_id[:8]} x2" in status and f"learner 2 on node {head_id[:8]} x2" in status

    # Exactly once through the scaling: every sampled record scored once and learned once.
    import redis

    client = redis.Redis.from_url(redis_server.url)
    sampled = [decode(f[b"r"]) for _, f in client.xrange(job_file["rollout_stream"])]
    scored = [decode(f[b"r"]) for _, f in client.xrange(job_file["scored_stream"])]
    expected = STEPS * PROMPTS * G
    assert len(sampled) == expected and len({r.record_id for r in sampled}) == expected
    assert len(scored) == expected and {r.record_id for r in scored} == {r.record_id for r in sampled}
    assert {r.meta["actor"] for r in sampled} == {"rollout-0", "rollout-1", "rollout-2"}
    from learner.train_log import rows_by_step

    last = rows_by_step([run_dir / "metrics.jsonl"])[STEPS]
    assert last["learned"] == expected
    assert all(last[k] == 0 for k in ("stale_dropped", "duplicates_dropped", "foreign_dropped", "incomplete_groups"))

    # Metrics: every one the dashboard plots was exported on the nodes' metrics endpoints.
    plotted = dashboard_metrics(json.loads((GRAFANA / "aurora_rl_dashboard.json").read_text()))
    assert plotted <= watcher.seen, sorted(plotted - watcher.seen)
