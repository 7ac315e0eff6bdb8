"""A GRPO step by phase, with 1 then 2 rollout actors, and what the record queue costs per record.

    PYTHONPATH=. .venv/bin/python bench/grpo_step.py [--steps 4] [--prompts 8] [--new-tokens 48]
        [--actors 1 2] [--set KEY=VALUE ...] [--out table.md]

Runs the real stage-3 job (``GRPOJob``: rollout actors with vLLM, reward workers, a 2-rank
DeepSpeed learner, Redis streams) on a small synthetic benchmark from a random tiny policy, on
one private Redis and a private Ray node (or the cluster ``RAY_ADDRESS`` names): ``--steps``
steps with the baseline's rollout actors, then the job scales itself to ours for ``--steps``
more. Reads the job's ``metrics.jsonl`` (each count's first step is dropped as warm-up) and
prints:
  - samples/s, sampling records/s and tokens/s with 1 (baseline) and 2 (ours) rollout actors;
  - the step's phases: sampling (vLLM, clip loading, publishing), the [SEG] pass, waiting for
    rewards, learning, broadcasting, and their share of the step;
  - the record queue: msgpack + Redis per record over both hops (rollout -> reward worker ->
    learner: encode, XADD, XREADGROUP, decode, XACK; scoring excluded), against the step's
    time per record.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from bench.side_by_side import Table

ROOT = Path(__file__).resolve().parents[1]

PHASES = [("sampling (vLLM, load, publish)", "sampling"), ("[SEG] pass (prefill + SAM)", "seg_s"),
          ("reward wait", "time_reward_wait_s"), ("learn", "time_learn_s"), ("broadcast", "time_broadcast_s"),
          ("other (driver)", "other")]


def start_checkpoint(folder: Path, data: Path) -> Path:
    """A random tiny policy whose completions vary and often hold [SEG] (so masks and rewards vary):
    a spread-out LM head whose [SEG] row points along the LLM's typical final state on a prompt."""
    import torch

    from aurora_rl.config.schema import ModelConfig
    from aurora_rl.data.clip_sample import collate_clips
    from aurora_rl.data.refavs_dataset import RefAVSDataset
    from aurora_rl.data.synthetic import synthetic_words
    from aurora_rl.model.build import MediaShape, build_tiny_policy
    from aurora_rl.model.checkpoint import save_policy
    from aurora_rl.model.tokenizer import build_word_tokenizer
    from aurora_rl.prompts.answer_format import build_prompt

    cfg = ModelConfig()
    cfg.lora.enabled = False
    cfg.sam.input_size = 64
    tok = build_word_tokenizer(synthetic_words())
    policy = build_tiny_policy(cfg, tok, MediaShape(), seed=11).eval()
    clip = RefAVSDataset(data, "train")[0]
    batch = collate_clips([clip])
    prompt = tok(build_prompt(clip.expression), add_special_tokens=False).input_ids
    g = torch.Generator().manual_seed(11)
    with torch.no_grad():
        head = policy.base_lm.get_output_embeddings()
        head.weight.copy_(torch.randn(head.weight.shape, generator=g) * 0.5)
        embeds = policy.prompt_embeds([prompt], batch["frames"], batch["fbank"], batch["fbank_lengths"])[0]
        hidden = policy.base_lm.model(inputs_embeds=embeds[None]).last_hidden_state[0].mean(0)
        head.weight[policy.ids.seg] += 2.0 * torch.nn.functional.normalize(hidden, dim=0)
    return save_policy(policy, tok, cfg, MediaShape(), folder)


def run_job(args, data: Path, checkpoint: Path, out: Path, redis_url: str) -> dict[int, list[dict]]:
    """One job: ``--steps`` steps with the baseline's rollout actors, then the job scales to ours
    (between steps, as ``aurora-rl scale`` does) for ``--steps`` more. Each count's first step is
    dropped as warm-up (the first vLLM and DeepSpeed calls; a new actor's first sampling)."""
    from aurora_rl.config import load_config
    from learner.grpo_job import GRPOJob
    from learner.train_log import rows_by_step

    base, ours = args.actors
    total = 2 * args.steps
    cfg = load_config(ROOT / "configs" / "tiny" / "grpo.yaml", [
        f"data.root={data}", f"run.output_dir={out}", "run.name=actors", f"model.path={checkpoint}",
        f"rollout.num_actors={base}", f"learner.steps={total}", f"learner.prompts_per_step={args.prompts}",
        f"rollout.sampling.max_new_tokens={args.new_tokens}", f"learner.checkpoint_every={total}",
        "learner.mask_frames_per_clip=2", "placement.autoscale.enabled=false", *args.set])
    job = GRPOJob(cfg, redis_url)
    try:
        job.start()
        job.run(scale_plan={args.steps: ours})
    finally:
        job.stop()
    rows = rows_by_step([out / "actors" / "metrics.jsonl"])
    return {base: [rows[s] for s in range(2, args.steps + 1)],
            ours: [rows[s] for s in range(args.steps + 2, total + 1)]}


def phase_times(rows: list[dict]) -> dict[str, float]:
    """Mean seconds per step of each phase (sampling = the rollout call minus its [SEG] pass)."""
    mean = {k: statistics.mean(r[k] for r in rows) for k in
            ("time_sample_s", "seg_s", "time_reward_wait_s", "time_learn_s", "time_broadcast_s", "time_step_s")}
    out = {"sampling": mean["time_sample_s"] - mean["seg_s"]}
    out.update({k: mean[k] for k in ("seg_s", "time_reward_wait_s", "time_learn_s", "time_broadcast_s")})
    out["other"] = mean["time_step_s"] - sum(out.values())
    out["step"] = mean["time_step_s"]
    return out


def queue_seconds_per_record(redis_url: str, records: int = 300) -> float:
    """Both hops of a record through msgpack + Redis Streams, scoring left out."""
    import uuid

    import numpy as np

    from aurora_rl.record_stream import RecordStream
    from aurora_rl.records import RolloutRecord, encode
    from aurora_rl.services.redis_client import connect_redis

    tag = uuid.uuid4().hex[:8]
    client = connect_redis(redis_url)
    rollout = RecordStream(client, f"bench:rollouts:{tag}", "scorers")
    scored = RecordStream(client, f"bench:scored:{tag}", "learner")
    rollout.ensure_group()
    scored.ensure_group()
    masks = np.zeros((10, 64, 64), dtype=bool)
    masks[:, 20:40, 10:50] = True
    record = RolloutRecord(uid="v_0_1", group_id="g", sample_index=0, group_size=3, policy_version=0,
                           prompt_token_ids=np.arange(40), completion_token_ids=np.arange(48),
                           sampling_logprobs=np.zeros(48), completion_text="it is [SEG] .")
    start = time.perf_counter()
    for _ in range(records):
        rollout.publish(record.with_masks(masks))
    done = 0
    while done < records:  # the reward worker's side: read, (score), publish scored, ack
        batch = rollout.read("w", count=16, block_ms=100)
        for d in batch:
            client.xadd(scored.stream, {b"r": encode(d.record)})
        rollout.ack([d.message_id for d in batch])
        done += len(batch)
    done = 0
    while done < records:  # the learner's side
        batch = scored.read("driver", count=256, block_ms=100)
        scored.ack([d.message_id for d in batch])
        done += len(batch)
    elapsed = time.perf_counter() - start
    client.delete(rollout.stream, scored.stream)
    return elapsed / records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=4, help="GRPO steps per actor count (the first is dropped)")
    parser.add_argument("--prompts", type=int, default=8, help="prompts per step (G=3 completions each)")
    parser.add_argument("--new-tokens", type=int, default=48)
    parser.add_argument("--videos", type=int, default=12)
    parser.add_argument("--actors", type=int, nargs=2, default=[1, 2], metavar=("BASELINE", "OURS"))
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="more overrides of tiny/grpo.yaml")
    parser.add_argument("--out", type=Path, default=None, help="also write the markdown tables here")
    args = parser.parse_args()
    from aurora_rl.config.schema import ServicesConfig
    from aurora_rl.data.synthetic import generate_benchmark
    from aurora_rl.services import run_services

    with tempfile.TemporaryDirectory() as tmp, run_services(ServicesConfig()) as services:
        tmp = Path(tmp)
        generate_benchmark(tmp / "synth", args.videos, seed=0)
        checkpoint = start_checkpoint(tmp / "start", tmp / "synth")
        rows = run_job(args, tmp / "synth", checkpoint, tmp / "runs", services.redis_url)
        queue_s = min(queue_seconds_per_record(services.redis_url) for _ in range(5))  # best of 5: a shared machine

    base, ours = args.actors
    records = args.prompts * 3
    table = Table(f"GRPO step, tiny policy, {args.prompts} prompts x G=3 x <= {args.new_tokens} tokens, "
                  f"{len(rows[base])} steps after warm-up", f"{base} rollout actor(s)", f"{ours} rollout actors")

    def mean(n, key):
        return statistics.mean(r[key] for r in rows[n])

    phases = {n: phase_times(rows[n]) for n in args.actors}
    table.add("samples learned per second (records / step time)", "samples/s", records / phases[base]["step"],
              records / phases[ours]["step"])
    table.add("sampling phase (rollout call incl. [SEG] pass)", "records/s", records / mean(base, "time_sample_s"),
              records / mean(ours, "time_sample_s"))
    table.add("vLLM generation, all actors together", "tokens/s", mean(base, "tokens_per_s"),
              mean(ours, "tokens_per_s"))
    table.add(f"record queue vs the whole step ({ours} actors): ratio = step time / queue time per record",
              "records/s", records / phases[ours]["step"], 1 / queue_s)
    lines = ["Phases, mean seconds per step (share of the step):", "",
             f"| phase | {base} actor(s) | {ours} actors |", "|---|---:|---:|"]
    for label, key in [*PHASES, ("step", "step")]:
        cells = [f"{phases[n][key]:.2f} s ({phases[n][key] / phases[n]['step']:.0%})" for n in args.actors]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    q = queue_s * records
    lines.append(f"| record queue (msgpack + Redis, both hops), inside sampling and reward wait | {q:.3f} s "
                 f"({q / phases[base]['step']:.1%}) | {q:.3f} s ({q / phases[ours]['step']:.1%}) |")
    table.notes.append(f"record queue: {queue_s * 1e3:.2f} ms per record over both hops (64 px masks, 10 frames)")
    table.sections.append("\n".join(lines))
    table.emit(args.out)


if __name__ == "__main__":
    main()
