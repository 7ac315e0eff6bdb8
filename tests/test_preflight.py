"""``aurora-rl preflight``: every role of a stage (grpo, sft, reflect, eval) started as the run
would start it, one real step of each, memory per device in one table; a config that cannot run
is a failed row and a failing exit."""

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
    from learner.preflight import preflight, table

    lines = []
    checks = preflight(grpo_config(tmp_path, synthetic_root, checkpoint), redis_server.url, log=lines.append)
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
    from learner.preflight import preflight

    cfg = grpo_config(tmp_path, synthetic_root, checkpoint, "rollout.sampling.max_new_tokens=100000",
                      "rollout.num_actors=1", "learner.num_ranks=1")
    checks = preflight(cfg, redis_server.url, log=lambda line: None)
    assert len(checks) == 1 and not checks[0].ok
    assert "PromptTooLong" in checks[0].note and "max_position_embeddings" in checks[0].note


def test_a_checkpoint_of_other_clips_is_refused_before_any_worker_starts(synthetic_root, tmp_path, checkpoint):
    """Ground truth read at another mask size would fail the first learner step on one rank."""
    from learner.grpo_job import GRPOJob

    cfg = grpo_config(tmp_path, synthetic_root, checkpoint, "data.mask_size=32")
    with pytest.raises(ValueError, match="data.mask_size is 32, the checkpoint's is 64"):
        GRPOJob(cfg, "redis://127.0.0.1:1")


def stage_config(stage: str, tmp_path, data_root, checkpoint, *extra):
    return load_config(CONFIGS / "tiny" / f"{stage}.yaml", [
        f"data.root={data_root}", f"run.output_dir={tmp_path}", f"model.path={checkpoint}", *extra])


def memory_rows(checks) -> dict:
    rows = {c.what.removesuffix(": memory"): c for c in checks if c.what.endswith(": memory")}
    for c in rows.values():
        assert c.ok and c.device == "cpu" and 0 < c.process_gib < c.total_gib and c.node, c
    return rows


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_an_sft_config_steps_every_ray_train_worker_with_its_teacher_once(ray_node, synthetic_root, tmp_path,
                                                                          checkpoint):
    from learner.preflight import preflight, table

    cfg = stage_config("sft", tmp_path, synthetic_root, checkpoint, f"teacher_path={checkpoint}", "data.max_samples=8")
    (tmp_path / "tiny-sft-preflight" / "ray_train").mkdir(parents=True)  # an earlier preflight's folder: emptied
    checks = preflight(cfg, None, log=lambda line: None)
    assert all(c.ok for c in checks), table(checks)
    assert [c.what.split(":")[0] for c in checks] == ["training examples", "one step", "sft-rank0", "sft-rank1"]
    assert checks[0].note == "8 examples"
    assert "2 Ray Train workers x batch 4, DeepSpeed ZeRO-2, the distillation teacher" in checks[1].what
    assert checks[1].note.startswith("loss ")
    assert set(memory_rows(checks)) == {"sft-rank0", "sft-rank1"}
    train_dir = tmp_path / "tiny-sft-preflight" / "ray_train"
    assert not list(train_dir.rglob("mp_rank_00_model_states.pt")) and not (train_dir.parent / "checkpoint").exists()


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_a_reflect_config_mines_a_clip_and_steps_on_a_reflective_example(ray_node, synthetic_root, tmp_path,
                                                                         checkpoint):
    from learner.preflight import preflight, table

    cfg = stage_config("reflect", tmp_path, synthetic_root, checkpoint, "trainer.num_workers=1", "data.max_samples=6",
                       "rollout.sampling.group_size=2", "rollout.sampling.max_new_tokens=12")
    checks = preflight(cfg, None, log=lambda line: None)
    assert all(c.ok for c in checks), table(checks)
    assert [c.what.split(":")[0] for c in checks] == [
        "the stage-1 checkpoint and its data", "start", "one clip per mining actor", "mining-0",
        "stage-1 examples and the corrector's CoT", "one step", "reflect-rank0"]
    assert "2 sampled answers" in checks[2].what
    examples = (tmp_path / "tiny-reflect-preflight" / "examples.jsonl").read_text().splitlines()
    assert len(examples) == 4 and all("reconsider" in line for line in examples)  # batch 4 of the reflective one
    assert set(memory_rows(checks)) == {"mining-0", "reflect-rank0"}


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_an_eval_config_answers_a_clip_on_its_evaluation_actor(ray_node, synthetic_root, tmp_path, checkpoint):
    from learner.preflight import preflight, table

    checks = preflight(stage_config("eval", tmp_path, synthetic_root, checkpoint), None, log=lambda line: None)
    assert all(c.ok for c in checks), table(checks)
    assert [c.what for c in checks] == ["the checkpoint and its data",
                                        "start: 1 evaluation actor (vLLM engine, [SEG] pass, SAM)",
                                        "one clip per evaluation actor: greedy + [SEG] + SAM", "evaluation-0: memory"]
    assert "vLLM max_model_len" in memory_rows(checks)["evaluation-0"].note


def test_the_command_fails_on_the_row_that_cannot_run_and_names_the_file(ray_node, synthetic_root, tmp_path,
                                                                        checkpoint):
    """A CoT file that is not there: the examples row fails, naming it, before any worker starts."""
    missing = tmp_path / "cot.jsonl"
    proc = subprocess.run(
        [sys.executable, "-m", "aurora_rl.cli", "preflight", str(CONFIGS / "tiny" / "sft.yaml"),
         f"services.ray_address={ray_node.address}", f"data.root={synthetic_root}", f"run.output_dir={tmp_path}",
         f"model.path={checkpoint}", "loss.distill=0", "cot.source=jsonl", f"cot.path={missing}",
         "--out", str(tmp_path / "table.md")], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "| training examples: the training split and its CoT | NO |" in proc.stdout and str(missing) in proc.stdout
    assert "[preflight] will not run: training examples" in proc.stdout
    assert (tmp_path / "table.md").read_text().count("| NO |") == 1
    assert not (tmp_path / "tiny-sft-preflight" / "ray_train").exists()
