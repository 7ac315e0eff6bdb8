"""Every role that runs a model asks Ray for the GPUs its config gives it, and one that gets no GPU
it can use stops with a named error instead of running on the CPU.

On this CPU machine a Ray node started with GPUs declared schedules by those numbers: an actor that
asks for a GPU is placed and given a GPU id, then finds no CUDA device. That is the error each role
must raise (before: evaluation, mining and CoT actors asked for no GPU at all and ran on the CPU).
The node runs in a subprocess, apart from the session's CPU-only node.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from aurora_rl.config.loader import ConfigError
from aurora_rl.config.loader import build as build_config
from aurora_rl.config.schema import GRPOConfig

SCRIPT = textwrap.dedent("""
    import json, sys
    import ray
    from aurora_rl.config.schema import DataConfig, GRPOConfig
    from aurora_rl.services.ray_cluster import LocalRayNode

    ckpt, data_root, work = sys.argv[1:4]
    node = LocalRayNode(num_cpus=4, num_gpus=2, include_dashboard=False).start()
    node.connect(log_to_driver=False)
    errors = {}

    def failure(call):
        try:
            call()
        except Exception as e:  # the actor's NoGPUError, wrapped by Ray
            return f"{type(e).__name__}: {e}"
        return "no error"

    try:
        from actors.eval_pool import EvalPool
        data = DataConfig(root=data_root, max_samples=1)

        def evaluate():
            with EvalPool(ckpt, data, work + "/eval", 1, gpus_per_actor=1) as pool:
                list(pool.stream("test_s", range(1), lambda _: None, "eval"))
        errors["eval"] = failure(evaluate)

        from actors.rollout_actor import RolloutActor
        from learner.grpo_learner import LearnerRank
        from learner.placement import JobPlacement
        cfg = GRPOConfig(stage="grpo", data=data)
        cfg.placement.mode = "cpu"
        cfg.placement.rollout.cpus = cfg.placement.learner.cpus = 1
        cfg.placement.rollout.gpus = cfg.placement.learner.gpus = 1
        cfg.learner.use_gpu = True
        placement = JobPlacement(cfg.placement, "gpu-test")
        (options,) = placement.reserve("r0", "rollout", 1)
        actor = RolloutActor.options(**options).remote("r0", ckpt, work + "/r0", data, cfg.rollout, "redis://none",
                                                       "s", gpus=options["num_gpus"])
        errors["rollout"] = failure(lambda: ray.get(actor.ready.remote()))
        (options,) = placement.reserve("learner", "learner", 1)
        rank = LearnerRank.options(**options).remote(0, 1, cfg, ckpt, cfg.learner.use_gpu)
        errors["learner"] = failure(lambda: ray.get(rank.setup.remote("127.0.0.1", 29500, "test/")))
        errors["requested"] = options["num_gpus"]
    finally:
        ray.shutdown()
        node.stop()
    print("RESULT " + json.dumps(errors))
""")


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_roles_configured_for_gpus_ask_for_them_and_stop_by_name_without_one(synthetic_root, tmp_path):
    import json

    from aurora_rl.model.build import MediaShape
    from aurora_rl.model.checkpoint import save_policy
    from tests.model.tiny_policy import make_policy, tiny_model_config

    policy, tok = make_policy(seed=1)
    ckpt = save_policy(policy, tok, tiny_model_config(), MediaShape(128, 64, 64), tmp_path / "ckpt")
    run = subprocess.run([sys.executable, "-c", SCRIPT, str(ckpt), str(synthetic_root), str(tmp_path / "work")],
                         capture_output=True, text=True, timeout=500)
    line = next((x for x in run.stdout.splitlines() if x.startswith("RESULT ")), None)
    assert line, run.stdout[-2000:] + run.stderr[-4000:]
    errors = json.loads(line.removeprefix("RESULT "))
    assert errors["requested"] == 1
    for role, name in (("eval", "eval actor 0"), ("rollout", "rollout actor r0"), ("learner", "learner rank 0")):
        assert "NoGPUError" in errors[role] and f"{name} asked for 1 GPU(s); Ray gave it GPU ids [" in errors[role], \
            (role, errors[role][-600:])
        assert "it does not run on the CPU instead" in errors[role]


def grpo(**changes) -> GRPOConfig:
    raw = {"stage": "grpo", "learner": {"use_gpu": False}, "placement": {"rollout": {"gpus": 0},
                                                                       "learner": {"gpus": 0}}}
    for key, value in changes.items():
        section, field = key.split("__")
        raw.setdefault(section, {})
        if section == "placement":
            role, field = field.split("_", 1)
            raw[section].setdefault(role, {})[field] = value
        else:
            raw[section][field] = value
    return build_config(GRPOConfig, raw, {}, "test")


def test_the_learner_and_the_rollout_actors_get_one_broadcast_backend():
    """One value for every member: before, rank 0 took NCCL whenever it had a GPU while rollout
    actors always joined with gloo, so a GPU run could never form its group."""
    assert grpo().broadcast_backend == "gloo"
    both = grpo(learner__use_gpu=True, placement__learner_gpus=1, placement__rollout_gpus=1)
    assert both.broadcast_backend == "nccl"
    learner_only = grpo(learner__use_gpu=True, placement__learner_gpus=1)
    assert learner_only.broadcast_backend == "gloo"  # a CPU actor cannot join NCCL: gloo for all
    with pytest.raises(ConfigError, match="broadcast.backend.*nccl needs a GPU on the learner and on every rollout"):
        grpo(broadcast__backend="nccl", learner__use_gpu=True, placement__learner_gpus=1)
