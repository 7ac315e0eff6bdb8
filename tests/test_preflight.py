"""``aurora-rl preflight``: every role started as the run would start it, one real step of each,
memory per device in one table; a config that cannot run is a failed row and a failing exit."""

from __future__ import annotations

import subprocess
import sys

import pytest

from aurora_rl.config import load_config
from tests.config.test_config_loading import CONFIGS


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> str:
    from aurora_rl.model.build import MediaShape
    from aurora_rl.model.checkpoint import save_policy
    from tests.model.tiny_policy import make_policy, tiny_model_config

    policy, tok = make_policy(seed=5)
    shape = MediaShape(fbank_bins=128, mask_size=64, image_size=64)  # the tiny configs' clips
    return str(save_policy(policy, tok, tiny_model_config(), shape, tmp_path_factory.mktemp("preflight") / "ckpt"))


def grpo_config(tmp_path, data_root, checkpoint, *extra):
    return load_config(CONFIGS / "tiny" / "grpo.yaml", [
        f"data.root={data_root}", f"run.output_dir={tmp_path}", f"model.path={checkpoint}", "rollout.num_actors=2",
        "reward.num_workers=1", "learner.num_ranks=2", "learner.prompts_per_step=2", "rollout.sampling.group_size=2",
        "rollout.sampling.max_new_tokens=8", *extra])


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_every_role_takes_a_real_step_and_reports_its_memory(ray_node, redis_server, synthetic_root, tmp_path,
                                                            checkpoint):
    from learner.preflight import preflight_grpo, table

    lines = []
    checks = preflight_grpo(grpo_config(tmp_path, synthetic_root, checkpoint), redis_server.url, log=lines.append)
    assert all(c.ok for c in checks), table(checks)
    assert checks[0].what.startswith("start: 2 rollout engines, 2 learner ranks, 1 reward worker,")
    assert checks[1].what.startswith("one step of every role") and "broadcast" in checks[1].note
    memory = {c.what.removesuffix(": memory"): c for c in checks[2:]}
    assert set(memory) == {"learner-0", "learner-1", "rollout-0", "rollout-1", "reward-0"}
    for c in memory.values():
        assert c.device == "cpu" and 0 < c.process_gib < c.total_gib and 0 < c.free_gib <= c.total_gib and c.node
    assert "vLLM max_model_len" in memory["rollout-0"].note
    assert (tmp_path / "tiny-grpo-preflight" / "metrics.jsonl").exists()  # its own folder; nothing saved
    assert not (tmp_path / "tiny-grpo-preflight" / "checkpoints").exists()
    assert "| learner-1: memory | yes |" in table(checks)


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_an_answer_budget_the_llm_cannot_hold_is_a_failed_start_that_names_it(ray_node, redis_server, synthetic_root,
                                                                             tmp_path, checkpoint):
    from learner.preflight import preflight_grpo

    cfg = grpo_config(tmp_path, synthetic_root, checkpoint, "rollout.sampling.max_new_tokens=100000",
                      "rollout.num_actors=1", "learner.num_ranks=1")
    checks = preflight_grpo(cfg, redis_server.url, log=lambda line: None)
    assert len(checks) == 1 and not checks[0].ok
    assert "PromptTooLong" in checks[0].note and "max_position_embeddings" in checks[0].note


def test_a_checkpoint_of_other_clips_is_refused_before_any_worker_starts(synthetic_root, tmp_path, checkpoint):
    """Ground truth read at another mask size would fail the first learner step on one rank."""
    from learner.grpo_job import GRPOJob

    cfg = grpo_config(tmp_path, synthetic_root, checkpoint, "data.mask_size=32")
    with pytest.raises(ValueError, match="data.mask_size is 32, the checkpoint's is 64"):
        GRPOJob(cfg, "redis://127.0.0.1:1")


def test_the_command_takes_grpo_configs_only():
    proc = subprocess.run([sys.executable, "-m", "aurora_rl.cli", "preflight", str(CONFIGS / "tiny" / "sft.yaml")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "needs a 'grpo' config" in proc.stderr
