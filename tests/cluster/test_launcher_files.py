"""cluster.yaml and cluster-onprem.yaml pass ``ray up``'s own config checks (no cloud access), hold
the real GRPO config's roles, and their shell commands parse; the head's Redis script works."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from aurora_rl.config import load_config
from aurora_rl.launcher_config import (
    LauncherConfigError,
    check_onprem_roles,
    node_resources,
    ray_up_dry_check,
    role_capacity,
)

ROOT = Path(__file__).resolve().parents[2]
CLUSTER = ROOT / "cluster.yaml"
ONPREM = ROOT / "cluster-onprem.yaml"
ROLES = ROOT / "cluster" / "onprem_roles.yaml"


def cli(*args, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", "aurora_rl.cli", *args], capture_output=True, text=True,
                          timeout=120, cwd=cwd)


def test_cluster_yaml_passes_ray_ups_config_checks():
    config = ray_up_dry_check(CLUSTER)
    types = config["available_node_types"]
    assert config["head_node_type"] == "head" and set(types) == {"head", "rollout", "learner"}
    # Each role's custom resource is offered by exactly one node type.
    offered = {name: {r for r in t["resources"] if r not in ("CPU", "GPU")} for name, t in types.items()}
    assert offered == {"head": {"reward_cpu"}, "rollout": {"rollout_gpu"}, "learner": {"learner_gpu"}}
    assert types["rollout"]["min_workers"] < types["rollout"]["max_workers"]  # rollout nodes scale
    assert types["learner"]["min_workers"] == types["learner"]["max_workers"] == 1
    assert types["head"]["max_workers"] == 0  # filled in by Ray's prepare_config
    assert "~/aurora/ref-avs" in config["file_mounts"] and "~/aurora/checkpoints" in config["file_mounts"]


def test_onprem_variant_passes_ray_ups_whole_config_bootstrap():
    config = ray_up_dry_check(ONPREM)  # the local provider: nothing in ray up's bootstrap is remote
    (node_type,) = config["available_node_types"].values()
    workers = config["provider"]["worker_ips"]
    assert node_type["min_workers"] == node_type["max_workers"] == len(workers)
    assert check_onprem_roles(config, yaml.safe_load(ROLES.read_text())) == []


@pytest.mark.parametrize("edit, message", [
    (lambda c: c.update(max_worker=3), "Additional properties are not allowed \\('max_worker'"),
    (lambda c: c["available_node_types"]["rollout"].update(resources={"rollout_gpu": 0.5}), "rollout_gpu"),
    (lambda c: c.update(head_node_type="hed"), "head_node_type"),
    (lambda c: c.update(max_workers=2), "max_workers"),  # below the node types' min_workers
])
def test_ray_rejects_a_broken_file(tmp_path, edit, message):
    config = yaml.safe_load(CLUSTER.read_text())
    edit(config)
    path = tmp_path / "cluster.yaml"
    path.write_text(yaml.safe_dump(config))
    with pytest.raises(LauncherConfigError, match=message):
        ray_up_dry_check(path)


def test_the_real_grpo_config_fits_the_node_types():
    grpo = load_config(ROOT / "configs" / "real" / "grpo.yaml")
    rows = {r.role: r for r in role_capacity(ray_up_dry_check(CLUSTER), grpo)}
    assert all(r.fits for r in rows.values()), rows
    assert rows["rollout"].node_types == {"rollout": 1} and rows["rollout"].wanted == 8  # autoscale ceiling
    assert rows["learner"].node_types == {"learner": 8} and rows["learner"].one_node
    assert rows["reward"].node_types == {"head": 8}
    too_many = load_config(ROOT / "configs" / "real" / "grpo.yaml", ["learner.num_ranks=12"])
    learner = next(r for r in role_capacity(ray_up_dry_check(CLUSTER), too_many) if r.role == "learner")
    assert not learner.fits and learner.capacity == 8


def test_check_command(tmp_path):
    ok = cli("cluster", "check", "cluster.yaml", "--config", "configs/real/grpo.yaml")
    assert ok.returncode == 0, ok.stderr
    assert "accepted by ray up's config checks" in ok.stdout and "learner: 4 x" in ok.stdout
    short = cli("cluster", "check", "cluster.yaml", "--config", "configs/real/grpo.yaml", "--set", "reward.num_workers=9")
    assert short.returncode == 1 and "reward: configs/real/grpo.yaml wants 9 but the node types hold 8" in short.stderr
    roles = tmp_path / "roles.yaml"
    roles.write_text("rollout_gpu: [192.168.1.11]\nlearner_gpu: [192.168.1.21, 192.168.1.99]\n")
    onprem = cli("cluster", "check", "cluster-onprem.yaml", "--roles", str(roles))
    assert onprem.returncode == 1
    assert "worker 192.168.1.12 has no role" in onprem.stderr and "192.168.1.99 (learner_gpu) is not among" in onprem.stderr


def test_onprem_node_resources():
    roles = yaml.safe_load(ROLES.read_text())
    assert node_resources(roles, ["10.1.1.1", "192.168.1.12"], 4) == {"rollout_gpu": 4}
    assert node_resources(roles, ["192.168.1.21"], 8) == {"learner_gpu": 8}
    with pytest.raises(LauncherConfigError, match="none of this host's addresses"):
        node_resources(roles, ["10.9.9.9"], 8)
    out = cli("cluster", "node-resources", "--roles", str(ROLES), "--gpus", "2", "192.168.1.11", "fe80::1")
    assert out.returncode == 0 and out.stdout.strip() == '{"rollout_gpu": 2}'


@pytest.mark.parametrize("path", [CLUSTER, ONPREM], ids=lambda p: p.name)
def test_every_command_is_valid_shell(path):
    config = yaml.safe_load(path.read_text())
    keys = ("setup_commands", "head_start_ray_commands", "worker_start_ray_commands")
    commands = [c for k in keys for c in config[k]]
    assert commands
    for command in commands:
        check = subprocess.run(["bash", "-n", "-c", command], capture_output=True, text=True)
        assert check.returncode == 0, (command, check.stderr)


def test_head_redis_script_serves_the_url_it_writes(tmp_path, started_pids):
    """cluster/start_redis.sh, as the head runs it: a password-protected Redis on the node's
    address, its URL in ~/.aurora/redis_url; a second run keeps the running server."""
    import os
    import signal

    import redis

    from aurora_rl.services.process import alive, free_port, wait_until

    env = {**os.environ, "HOME": str(tmp_path), "AURORA_REDIS_PORT": str(free_port())}
    pid_file = tmp_path / ".aurora" / "redis" / "redis.pid"
    try:
        for _ in range(2):
            run = subprocess.run(["bash", str(ROOT / "cluster" / "start_redis.sh")], env=env, capture_output=True,
                                 text=True, timeout=60)
            assert run.returncode == 0, run.stderr
            # redis-server creates its pid file, then writes it: wait for the number
            wait_until(lambda: pid_file.exists() and pid_file.read_text().strip(), 10, "redis pid file")
            started_pids.append(int(pid_file.read_text()))
        assert len(set(started_pids[-2:])) == 1  # the second run kept the first server
        url = (tmp_path / ".aurora" / "redis_url").read_text().strip()
        assert url.startswith("redis://:") and "127.0.0.1" not in url
        assert redis.Redis.from_url(url).ping()
        with pytest.raises(redis.AuthenticationError):
            redis.Redis.from_url(url.replace(url.split("@")[0], "redis://:wrong")).ping()
        assert (tmp_path / ".aurora" / "redis_url").stat().st_mode & 0o077 == 0
    finally:
        if pid_file.exists() and pid_file.read_text().strip():
            pid = int(pid_file.read_text())
            os.kill(pid, signal.SIGTERM)
            wait_until(lambda: not alive([pid]), 15, "redis-server to stop")
