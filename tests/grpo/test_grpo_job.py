"""Stage 3 on CPU: 2 rollout actors (vLLM), 2 reward workers, a 2-rank DeepSpeed learner, Redis.

Counts every record end to end, checks the policy version and that the rollout actors sample
with exactly the learner's weights after each broadcast; then adds and removes rollout actors
in the running job.
"""

from __future__ import annotations

import subprocess
import sys
from contextlib import contextmanager

import numpy as np
import pytest
import torch

from aurora_rl.config import load_config
from aurora_rl.config.loader import ConfigError
from aurora_rl.model.build import MediaShape
from aurora_rl.model.checkpoint import load_policy, save_policy
from aurora_rl.records import decode
from learner.grpo_job import GRPOJob
from learner.learner_group import join_ranks
from learner.train_log import rows_by_step
from tests.model.tiny_policy import make_inputs, make_policy, tiny_model_config
from tests.config.test_config_loading import CONFIGS


@pytest.fixture(scope="module")
def start_checkpoint(tmp_path_factory):
    policy, tok = make_policy(seed=11, lora_b_std=0.05)
    g = torch.Generator().manual_seed(11)
    with torch.no_grad():
        # A spread-out random LM whose [SEG] row points along its typical final state: varied
        # completions that contain [SEG], so masks, IoU rewards and advantages are not all zero.
        head = policy.base_lm.get_output_embeddings()
        head.weight.copy_(torch.randn(head.weight.shape, generator=g) * 0.5)
        batch = make_inputs(tok, batch=1, with_answer=False)
        embeds = policy.eval().prompt_embeds(batch.prompt_ids, batch.frames, batch.fbank)[0]
        hidden = policy.base_lm.model(inputs_embeds=embeds[None]).last_hidden_state[0].mean(0)
        head.weight[policy.ids.seg] += 2.0 * torch.nn.functional.normalize(hidden, dim=0)
    return save_policy(policy, tok, tiny_model_config(), MediaShape(128, 64, 64), tmp_path_factory.mktemp("start") / "ckpt")


def job_config(tmp_path, data_root, checkpoint, *extra):
    return load_config(CONFIGS / "tiny" / "grpo.yaml", [
        f"data.root={data_root}", f"run.output_dir={tmp_path}", f"model.path={checkpoint}",
        "rollout.num_actors=2", "reward.num_workers=2", "learner.num_ranks=2", "learner.prompts_per_step=2",
        "rollout.sampling.group_size=3", "rollout.sampling.max_new_tokens=12", "learner.optim.lr=0.02",
        "learner.checkpoint_every=100", "queue.collect_timeout_s=120", *extra,
    ])


@contextmanager
def started_job(cfg, redis_url: str):
    """A started ``GRPOJob`` whose log lines are kept in ``job.lines`` (and printed); stopped on exit."""
    lines: list[str] = []
    job = GRPOJob(cfg, redis_url, log=lambda m: (lines.append(m), print(m)))
    job.lines = lines
    try:
        job.start()
        yield job
    finally:
        job.stop()


def stream_records(job, stream):
    client = job.redis
    return [decode(fields[b"r"]) for _, fields in client.xrange(stream)]


def reward_stats(job):
    import ray

    return ray.get([w.stats.remote() for w in job.rewards.workers])


def assert_actors_match_learner(job, indices):
    import ray

    learner = np.array(ray.get(job.learners.ranks[0].first_token_logprobs.remote(indices)))
    for actor in job.rollout.actors.values():
        for row, top in zip(learner, ray.get(actor.first_token_logprobs.remote(indices))):
            for token, logprob in top.items():
                assert logprob == pytest.approx(row[token], abs=1e-4)
    return learner


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_every_record_sampled_scored_and_learned_once_while_actors_come_and_go(ray_node, redis_server, synthetic_root,
                                                                              tmp_path, start_checkpoint):
    """Three steps of 3 prompts x G=3, learned in micro-batches of 2 (ZeRO-1): the first with 2 rollout
    actors, the second after a third was added (it holds the current weights before it samples),
    the third after ``aurora-rl scale`` asked for one. Every record is counted end to end."""
    import ray

    cfg = job_config(tmp_path, synthetic_root, start_checkpoint, "learner.steps=3", "learner.micro_batch=2",
                     "learner.deepspeed.zero_stage=1", "learner.prompts_per_step=3")
    job = GRPOJob(cfg, redis_server.url)
    try:
        job.start()
        before = assert_actors_match_learner(job, [0, 1])  # version 0 everywhere
        job.run(steps=1)
        job.scale_rollout(3)
        new_actor = job.rollout.actors["rollout-2"]
        assert ray.get(new_actor.ready.remote())["version"] == job.version == 1  # current weights before sampling
        assert_actors_match_learner(job, [2])
        job.run(steps=1)
        scale = subprocess.run([sys.executable, "-m", "aurora_rl.cli", "scale", "--run", str(job.run_dir),
                                "--rollout", "1"], capture_output=True, text=True, timeout=60)
        assert scale.returncode == 0, scale.stderr
        final = job.run(steps=1)  # applies the request before sampling
        assert sorted(job.rollout.actors) == ["rollout-0"]
        status = subprocess.run([sys.executable, "-m", "aurora_rl.cli", "status", "--run", str(job.run_dir)],
                                capture_output=True, text=True, timeout=60)
        assert status.returncode == 0 and "step 3  policy version 3  rollout actors 1" in status.stdout, status
        assert job.version == 3 and job.step == 3
        assert ray.get(job.rollout.actors["rollout-0"].ready.remote())["version"] == 3
        after = assert_actors_match_learner(job, [0, 1])  # the broadcast weights are what vLLM samples with
        assert np.abs(after - before).max() > 1e-3  # and they did change: this check could fail

        sampled = stream_records(job, job.queue.rollout_stream)
        scored = stream_records(job, job.queue.scored_stream)
        expected = 3 * 3 * 3  # steps x prompts x G
        assert len(sampled) == expected and len({r.record_id for r in sampled}) == expected
        assert len(scored) == expected and {r.record_id for r in scored} == {r.record_id for r in sampled}
        assert all(r.reward is not None and set(r.rewards) >= {"format", "iou", "cls"} for r in scored)
        assert {r.policy_version for r in sampled} == {0, 1, 2}
        assert job.counters["learned"] == expected
        by_actor = {}
        for r in sampled:
            by_actor.setdefault(r.meta["actor"], []).append(r.policy_version)
        assert 1 in by_actor["rollout-2"]  # the added actor contributed at version 1
        assert set(by_actor["rollout-0"]) == {0, 1, 2}
        budget = cfg.rollout.sampling.max_new_tokens
        for step, row in metrics_by_step(tmp_path / cfg.run.name).items():  # each step's cut / long answers
            lengths = [len(r.completion_token_ids) for r in sampled if r.policy_version == step - 1]
            assert row["completion_tokens"] == pytest.approx(np.mean(lengths))
            assert row["truncated"] == pytest.approx(np.mean([n >= budget for n in lengths]))
        assert job.collector.counters == {"stale_dropped": 0, "duplicates_dropped": 0, "foreign_dropped": 0,
                                          "incomplete_groups": 0, "abandoned_dropped": 0, "misfit_dropped": 0,
                                          "rejected": 0, "nan_dropped": 0}
        assert set(job.faults.values()) == {0}
        stats = reward_stats(job)
        assert sum(s["scored"] for s in stats) == expected and sum(s["duplicates"] for s in stats) == 0
        assert (final / "aurora_model.json").exists()
        loaded, *_ = load_policy(final)
        assert sum(p.numel() for p in loaded.parameters()) > 0
        assert_no_password_in_files(job, redis_server.password, ray_node)
    finally:
        job.stop()


def assert_no_password_in_files(job, owner_password: str, ray_node) -> None:
    """No Redis password (the owner's, any role's) in the run folder, the library logs in it, or
    the Ray node's logs (worker output, raylet, GCS)."""
    secrets = [owner_password.encode(), *(p.encode() for p in job.users.passwords.values())]
    files = [p for p in job.run_dir.rglob("*") if p.is_file()]
    files += [p for p in ray_node.temp_dir.glob("session_*/logs/**/*") if p.is_file()]
    assert any(p.parent == job.run_dir / "logs" for p in files)  # the library logs were there to read
    assert len(files) > 20
    leaks = [str(p) for p in files if any(s in p.read_bytes() for s in secrets)]
    assert not leaks, f"a Redis password in {leaks}"


def metrics_by_step(run_dir) -> dict[int, dict]:
    return rows_by_step([run_dir / "metrics.jsonl"])


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_resume_from_a_checkpoint_repeats_the_same_losses(ray_node, redis_server, synthetic_root, tmp_path,
                                                          start_checkpoint):
    import shutil

    from learner import checkpoints

    cfg = job_config(tmp_path, synthetic_root, start_checkpoint, "learner.steps=4", "learner.checkpoint_every=2",
                     "run.name=first", "rollout.num_actors=1")
    job = GRPOJob(cfg, redis_server.url)
    try:
        job.start()
        job.run()
    finally:
        job.stop()
    first = metrics_by_step(tmp_path / "first")
    assert sorted(first) == [1, 2, 3, 4]
    saved = tmp_path / "first" / "checkpoints"
    assert (saved / "latest").read_text() == "step_000004" and not list(saved.glob(".*"))  # nothing partial left
    assert all(checkpoints.problems(saved / f"step_00000{n}") == [] for n in (2, 4))  # each whole, as its manifest says

    # the newest checkpoint damaged (a file cut short): resume names it and takes the one before
    for step in ("step_000002", "step_000004"):
        shutil.copytree(saved / step, tmp_path / "again" / "checkpoints" / step)
    shutil.copy(saved / "latest", tmp_path / "again" / "checkpoints" / "latest")
    damaged = next((tmp_path / "again" / "checkpoints" / "step_000004").rglob("*optim_states.pt"))
    damaged.write_bytes(damaged.read_bytes()[:1000])
    cfg = job_config(tmp_path, synthetic_root, start_checkpoint, "learner.steps=4", "learner.checkpoint_every=2",
                     "run.name=again", "rollout.num_actors=1")
    lines: list[str] = []
    job = GRPOJob(cfg, redis_server.url, resume=True, log=lines.append)
    try:
        job.start()
        assert (job.step, job.version) == (2, 2)
        assert any(line.startswith(f"[checkpoint] skipping {damaged.parents[1]}: ") and "has 1000 bytes" in line
                   for line in lines), lines
        job.run()
    finally:
        job.stop()
    again = metrics_by_step(tmp_path / "again")
    assert sorted(again) == [3, 4]
    for step in (3, 4):
        for key in ("reward", "loss", "policy_loss", "mask_bce"):
            assert again[step][key] == pytest.approx(first[step][key], rel=1e-4, abs=1e-6), (step, key)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_ranks_whose_completions_lack_seg_still_step_together(ray_node, synthetic_root, tmp_path, start_checkpoint,
                                                              monkeypatch):
    """Rank 0 learns from a completion with [SEG], rank 1 from one without: ZeRO's gradient
    collectives still match (every trainable parameter gets a gradient on every rank). Then rank 0
    fails in a step (a clip the split lacks): rank 1, left waiting in the step's collective, is
    stopped and the step raises rank 0's error instead of waiting forever."""
    import ray

    import learner.learner_group as learner_group

    from aurora_rl.prompts.answer_format import build_prompt, compose_answer
    from aurora_rl.records import RolloutRecord, encode
    from learner.grpo_learner import LearnerRank

    cfg = job_config(tmp_path, synthetic_root, start_checkpoint)
    _, tok = make_policy(seed=11)
    prompt = np.array(tok(build_prompt("the red object ."), add_special_tokens=False).input_ids)
    with_seg = tok(compose_answer("a .", "b .", "c .", "dog"), add_special_tokens=False).input_ids
    without = with_seg[:6]

    def record(ids, k):
        return encode(RolloutRecord(uid="u", group_id="g", sample_index=k, group_size=2, policy_version=0,
                                    prompt_token_ids=prompt, completion_token_ids=np.array(ids),
                                    sampling_logprobs=np.full(len(ids), -1.0), completion_text="",
                                    meta={"dataset_index": k}))

    ranks = [LearnerRank.remote(r, 2, cfg, str(start_checkpoint)) for r in range(2)]
    try:
        join_ranks(ranks)
        for step in range(2):
            stats = ray.get([ranks[0].train_step.remote([record(with_seg, 0)], [1.0], step),
                             ranks[1].train_step.remote([record(without, 1)], [-1.0], step)], timeout=300)
            assert all(np.isfinite(s["loss"]) for s in stats)
        assert stats[0]["mask_dice"] > 0 and stats[1]["mask_dice"] == 0.0

        monkeypatch.setattr(learner_group, "STRANDED_S", 5.0)
        group = learner_group.LearnerGroup(cfg, str(start_checkpoint), None, tmp_path)
        group.ranks = list(ranks)
        with pytest.raises(RuntimeError, match=r"learner rank 0 failed in step 3 \(ranks \[1\] were left waiting"):
            group.step([[record(with_seg, 10**6)], [record(without, 1)]], [[1.0], [-1.0]], 2)
        assert group.ranks == []
    finally:
        for r in ranks:
            ray.kill(r)


def learner_step(cfg, checkpoint, shares: list[list[bytes]], advantages: list[list[float]]):
    """One train_step of a fresh 2-rank learner group: (each rank's stats, rank 0's weights after it)."""
    return learner_steps(cfg, checkpoint, [(shares, advantages)])[0]


def learner_steps(cfg, checkpoint, steps: list[tuple[list[list[bytes]], list[list[float]]]]) -> list[tuple]:
    """Train steps of one fresh 2-rank learner group, each (shares, advantages): after each, (each
    rank's stats, rank 0's weights)."""
    import ray

    from learner.grpo_learner import LearnerRank

    ranks = [LearnerRank.remote(r, 2, cfg, str(checkpoint)) for r in range(2)]
    try:
        join_ranks(ranks)
        out = []
        for step, (shares, advantages) in enumerate(steps):
            stats = ray.get([r.train_step.remote(p, a, step) for r, p, a in zip(ranks, shares, advantages)],
                            timeout=300)
            state = ray.get(ranks[0].trainable_state.remote())
            # compact copies: a ZeRO view sent as is would carry the whole flat buffer, once per tensor
            assert all(v.untyped_storage().nbytes() == v.numel() * v.element_size() for v in state.values())
            out.append((stats, state))
        return out
    finally:
        for r in ranks:
            ray.kill(r)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_micro_batches_add_up_to_the_step_of_the_whole_batch(ray_node, synthetic_root, tmp_path, start_checkpoint):
    """A step taken in micro-batches (ranks with 3 and 2 completions, 2 per pass) has the loss,
    gradient norm and new weights of the step on the whole batch; a non-finite loss in a later
    micro-batch still skips the step on both ranks; objective.mask_min_iou keeps the mask loss off
    completions whose rollout IoU is below it; train_encoders=false freezes the media encoders."""
    from aurora_rl.prompts.answer_format import build_prompt, compose_answer
    from aurora_rl.records import RolloutRecord, encode

    policy, tok = load_policy(start_checkpoint)[:2]
    prompt = np.array(tok(build_prompt("the red object ."), add_special_tokens=False).input_ids)
    answers = [tok(compose_answer("a red dog .", "b .", "c .", cls), add_special_tokens=False).input_ids
               for cls in ("dog", "bird", "car")]

    def record(ids, k, iou):
        return encode(RolloutRecord(uid="u", group_id="g", sample_index=k, group_size=5, policy_version=0,
                                    prompt_token_ids=prompt, completion_token_ids=np.array(ids),
                                    sampling_logprobs=np.full(len(ids), -1.0), completion_text="",
                                    meta={"dataset_index": k}, rewards={"iou": iou}))

    def shares(iou=0.8):
        recs = [record(answers[0], 0, iou), record(answers[1][:-3], 1, iou), record(answers[2][:7], 2, iou),  # no [SEG]
                record(answers[1], 3, iou), record(answers[2], 4, iou)]
        return [recs[:3], recs[3:]]

    # without LoRA dropout both runs compute the same function: only the summation order differs
    model_cfg = tiny_model_config()
    model_cfg.lora.dropout = 0.0
    checkpoint = save_policy(policy, tok, model_cfg, MediaShape(128, 64, 64), tmp_path / "no_dropout")
    start = {k: v.detach().clone() for k, v in policy.named_parameters() if v.requires_grad}

    def steps(*overrides, advantages=(((1.0, -0.5, 0.25), (-1.0, 0.5)),), iou=0.8):
        # the answers are written, not sampled: no top-p nucleus, or a word outside it gets no gradient
        cfg = job_config(tmp_path, synthetic_root, checkpoint, "rollout.sampling.top_p=1.0", *overrides)
        return learner_steps(cfg, checkpoint, [(shares(iou), [list(a) for a in step]) for step in advantages])

    [(whole, w_whole)] = steps()
    # then, on the same ranks, an infinite advantage makes rank 0's second micro-batch's loss non-finite
    (parts, w_parts), (nan, w_nan) = steps("learner.micro_batch=2", "learner.deepspeed.zero_stage=1", advantages=(
        ((1.0, -0.5, 0.25), (-1.0, 0.5)), ((1.0, -0.5, float("inf")), (-1.0, 0.5))))
    assert [s["micro_batches"] for s in whole] == [1, 1] and [s["micro_batches"] for s in parts] == [2, 1]
    for a, b in zip(whole, parts):
        for key in ("loss", "policy_loss", "clip_fraction", "mask_bce", "mask_dice", "grad_norm", "tokens"):
            assert b[key] == pytest.approx(a[key], rel=1e-5, abs=1e-8), key
        assert a["mask_dice"] > 0 and b["skipped"] == 0
    assert set(w_whole) == set(start)
    moved = sum(float((w_whole[k] - start[k]).abs().sum()) for k in start)
    apart = sum(float((w_parts[k] - w_whole[k]).abs().sum()) for k in start)
    assert moved > 1.0  # the step did change the weights (lr 0.02), so the comparison below could fail
    assert apart < 1e-4 * moved

    assert [s["skipped"] for s in nan] == [1.0, 1.0]  # skipped on both ranks: the weights stay
    assert all(torch.equal(w_nan[k], w_parts[k]) for k in start)

    [(gated, w_gated)] = steps("objective.mask_min_iou=0.9", "learner.train_encoders=false", iou=0.5)
    assert all(s["mask_bce"] == 0.0 and s["mask_dice"] == 0.0 and s["skipped"] == 0 for s in gated)
    encoders = [k for k in start if k.startswith(("vision.", "audio."))]
    assert encoders and not set(encoders) & set(w_gated)  # frozen: neither trained nor broadcast
    assert any(not torch.equal(v, start[k]) for k, v in w_gated.items() if "lm_head" in k)  # the LLM learned
    with pytest.raises(ConfigError, match="micro_batch"):  # ZeRO-2, the default: refused
        job_config(tmp_path, synthetic_root, checkpoint, "learner.micro_batch=2")


def one_answer_per_rank(checkpoint) -> list[list[bytes]]:
    """One encoded completion for each of 2 ranks (a group of 2 on clips 0 and 1)."""
    from aurora_rl.prompts.answer_format import build_prompt, compose_answer
    from aurora_rl.records import RolloutRecord, encode

    tok = load_policy(checkpoint)[1]
    prompt = np.array(tok(build_prompt("the red object ."), add_special_tokens=False).input_ids)
    answer = tok(compose_answer("a red dog .", "b .", "c .", "dog"), add_special_tokens=False).input_ids
    return [[encode(RolloutRecord(uid="u", group_id="g", sample_index=k, group_size=2, policy_version=0,
                                  prompt_token_ids=prompt, completion_token_ids=np.array(answer),
                                  sampling_logprobs=np.full(len(answer), -1.0), completion_text="",
                                  meta={"dataset_index": k}))] for k in range(2)]


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_every_object_rows_add_their_ce_to_each_rank_step(ray_node, synthetic_root, tmp_path, start_checkpoint):
    """mix.every_object_rows: each rank also learns that many "every object ." rows by CE, weighted
    objective.mix_ce, on top of the same GRPO loss. With mix.every_object_data the rows come
    from that dataset's training split: here a copy whose scene facts put every object on the other side."""
    import shutil

    from aurora_rl.config.loader import ConfigError

    mirrored = tmp_path / "mirrored"
    shutil.copytree(synthetic_root, mirrored)
    facts = (mirrored / "scene_facts.jsonl").read_text()
    swapped = facts.replace('"left"', '"@"').replace('"right"', '"left"').replace('"@"', '"right"')
    assert swapped != facts
    (mirrored / "scene_facts.jsonl").write_text(swapped)

    def step(*overrides):
        return learner_step(job_config(tmp_path, synthetic_root, start_checkpoint, *overrides), start_checkpoint,
                            one_answer_per_rank(start_checkpoint), [[1.0], [-1.0]])

    plain, w_plain = step()
    mixed, w_mixed = step("mix.every_object_rows=2", "objective.mix_ce=0.5")
    assert "mix_ce" not in plain[0]
    for a, b in zip(plain, mixed):
        assert b["mix_ce"] > 0.1
        assert b["loss"] == pytest.approx(a["loss"] + 0.5 * b["mix_ce"], rel=1e-5)
        assert b["policy_loss"] == pytest.approx(a["policy_loss"], rel=1e-5)
    assert sum(float((w_mixed[k] - w_plain[k]).abs().sum()) for k in w_plain) > 1e-3

    other, _ = step("mix.every_object_rows=2", "objective.mix_ce=0.5",
                    f"mix.every_object_data={mirrored}")
    for a, b in zip(mixed, other):
        assert abs(b["mix_ce"] - a["mix_ce"]) > 1e-4  # the mirrored answers
        assert b["policy_loss"] == pytest.approx(a["policy_loss"], rel=1e-5)  # the same prompts' dataset
    with pytest.raises(ConfigError, match="mix.every_object_data: gives the every-object rows"):
        job_config(tmp_path, synthetic_root, start_checkpoint, f"mix.every_object_data={mirrored}")
