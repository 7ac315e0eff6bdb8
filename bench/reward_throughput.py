"""How many rollout records per second the reward path scores, and how many rollout actors that serves.

    PYTHONPATH=. .venv/bin/python bench/reward_throughput.py [--records N] [--passes P]
        [--mask-sizes 64 224] [--rollout-rate R] [--out table.md]

Generates a synthetic benchmark, builds rollout records with 10-frame masks (the ground truth
shifted by 2 px, so IoU < 1 and the RLE has realistic runs), and prints, per mask size:
  - RLE + msgpack encoding of records (the rollout side) against one rollout actor's output;
  - ``records.decode`` as it was (the RLE expanded to validate it) against now (runs checked,
    masks expanded only where the reward reads them), and the same in decode + score_record;
  - ``StreamScorer`` in this process through Redis (read, score, Lua commit + ack) against the
    pure decode + score loop: what the queue costs;
  - one ``RewardWorker`` Ray actor end to end (records published first; timed from run() to the
    last scored record; its ground-truth cache starts cold) against one rollout actor's output
    (``--rollout-rate`` records/s, from bench/grpo_step.py): the ratio is how many rollout
    actors one reward worker keeps up with.
Best of ``--passes``, taking turns (the machine may be shared). A private Redis and Ray node are
started and stopped by the benchmark.
"""

from __future__ import annotations

import argparse
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np

from aurora_rl.config.schema import DataConfig, QueueConfig, RewardConfig
from aurora_rl.data.synthetic import generate_benchmark
from aurora_rl.mask_rle import rle_decode
from aurora_rl.prompts.answer_format import compose_answer
from aurora_rl.record_stream import FIELD, RecordStream
from aurora_rl.records import RolloutRecord, decode, encode
from rewards.ground_truth import GroundTruth
from rewards.reward_functions import score_record
from rewards.stream_scorer import GROUP, StreamScorer, request_stop, scorer_client

from bench.side_by_side import Table

ROLLOUT_RATE = 30.0  # records/s of one rollout actor on this CPU (bench/grpo_step.py; docs/BENCHMARKS.md)


def build_records(root: Path, mask_size: int, count: int) -> list[RolloutRecord]:
    truth = GroundTruth(root, "train", mask_size)
    lines = sorted(truth.rows)
    records = []
    for i in range(count):
        line = lines[(i // 3) % len(lines)]
        t = truth(line)
        record = RolloutRecord(
            uid=truth.rows[line].uid, group_id=f"g{i // 3}", sample_index=i % 3, group_size=3, policy_version=0,
            prompt_token_ids=np.arange(40), completion_token_ids=np.arange(60), sampling_logprobs=np.zeros(60),
            completion_text=compose_answer("a red circle", "a low beat", "the first sound", t.target_class),
            meta={"row": line},
        ).with_masks(np.roll(t.masks.astype(bool), 2, axis=2))
        records.append(record)
    return records


def decode_before(payload: bytes):
    """``records.decode`` as it was: the mask runs expanded to validate them."""
    record = decode(payload)
    if record.masks_rle is not None:
        rle_decode(record.masks_rle)
    return record


def pure_rate(root: Path, mask_size: int, payloads: list[bytes], decoder) -> float:
    truth = GroundTruth(root, "train", mask_size)
    cfg = RewardConfig()
    for p in payloads:  # warm the ground-truth cache: this row measures the scoring alone
        truth(decode(p).meta["row"])
    start = time.perf_counter()
    for p in payloads:
        record = decoder(p)
        t = truth(record.meta["row"])
        score_record(record, t.masks, t.target_class, cfg)
    return len(payloads) / (time.perf_counter() - start)


def rate(fn, items) -> float:
    start = time.perf_counter()
    for x in items:
        fn(x)
    return len(items) / (time.perf_counter() - start)


def fresh_queue() -> QueueConfig:
    tag = uuid.uuid4().hex[:8]
    return QueueConfig(rollout_stream=f"bench:rollouts:{tag}", scored_stream=f"bench:scored:{tag}")


def publish(redis_url: str, queue: QueueConfig, payloads: list[bytes]):
    client = scorer_client(redis_url)
    stream = RecordStream(client, queue.rollout_stream, GROUP)
    stream.ensure_group()
    pipe = client.pipeline(transaction=False)  # one round trip for all
    for p in payloads:
        pipe.xadd(queue.rollout_stream, {FIELD: p})
    pipe.execute()
    return client


def wait_scored(client, queue: QueueConfig, count: int, timeout_s: float = 300.0) -> float:
    deadline = time.monotonic() + timeout_s
    while client.xlen(queue.scored_stream) < count:
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {client.xlen(queue.scored_stream)} of {count} scored in {timeout_s} s")
        time.sleep(0.005)
    return time.perf_counter()


def in_process_rate(redis_url: str, root: Path, mask_size: int, payloads: list[bytes]) -> float:
    queue = fresh_queue()
    client = publish(redis_url, queue, payloads)
    scorer = StreamScorer(scorer_client(redis_url), queue, RewardConfig(), GroundTruth(root, None, mask_size), "bench")
    start = time.perf_counter()
    while scorer.counts["scored"] < len(payloads):
        scorer.step(block_ms=100)
    rate = len(payloads) / (time.perf_counter() - start)
    assert client.xlen(queue.scored_stream) == len(payloads)
    return rate


def worker_rate(redis_url: str, root: Path, mask_size: int, payloads: list[bytes]) -> tuple[float, float]:
    """(end-to-end records/s, records/s of the worker's busy time)."""
    import ray

    from rewards.reward_worker import RewardWorker

    queue = fresh_queue()
    client = publish(redis_url, queue, payloads)
    worker = RewardWorker.remote(redis_url, queue, RewardConfig(), DataConfig(root=str(root), mask_size=mask_size),
                                 "bench")
    ray.get(worker.stats.remote())  # constructed: time only the scoring
    start = time.perf_counter()
    run = worker.run.remote()
    end = wait_scored(client, queue, len(payloads))
    request_stop(client, queue.rollout_stream)
    stats = ray.get(run)
    ray.kill(worker)
    return len(payloads) / (end - start), stats["capacity_per_s"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=int, default=20)
    parser.add_argument("--records", type=int, default=600)
    parser.add_argument("--passes", type=int, default=3)
    parser.add_argument("--rollout-rate", type=float, default=ROLLOUT_RATE,
                        help="records/s one rollout actor produces (bench/grpo_step.py measures it)")
    parser.add_argument("--mask-sizes", type=int, nargs="+", default=[64, 224])
    parser.add_argument("--out", type=Path, default=None, help="also write the markdown table here")
    args = parser.parse_args()

    import ray

    from aurora_rl.services.ray_cluster import LocalRayNode
    from aurora_rl.services.redis_server import RedisServer

    table = Table(f"Reward path, records of 10 frames ({args.records} records, best of {args.passes})")
    served = []
    with tempfile.TemporaryDirectory() as tmp, RedisServer() as redis_server:
        root = Path(tmp) / "synth"
        generate_benchmark(root, args.videos, seed=0)
        node = LocalRayNode(num_cpus=2, include_dashboard=False).start()
        try:
            node.connect(log_to_driver=False)
            for size in args.mask_sizes:
                records = build_records(root, size, args.records)
                payloads = [encode(r) for r in records]
                kib = sum(map(len, payloads)) / len(payloads) / 1024
                best = best_of(args.passes, {
                    "encode": lambda: rate(lambda r: encode(r.with_masks(r.masks())), records),
                    "decode_before": lambda: rate(decode_before, payloads),
                    "decode": lambda: rate(decode, payloads),
                    "score_before": lambda: pure_rate(root, size, payloads, decode_before),
                    "score": lambda: pure_rate(root, size, payloads, decode),
                    "scorer": lambda: in_process_rate(redis_server.url, root, size, payloads),
                    "worker": lambda: worker_rate(redis_server.url, root, size, payloads)[0],
                })
                case = f"{size} px masks ({kib:.1f} KiB/record)"
                table.add(f"{case}: RLE + msgpack encode vs one rollout actor's output (--rollout-rate)", "records/s",
                          args.rollout_rate, best["encode"])
                table.add(f"{case}: records.decode, masks expanded (before) vs runs checked (now)", "records/s",
                          best["decode_before"], best["decode"])
                table.add(f"{case}: decode + score_record, before vs now", "records/s", best["score_before"],
                          best["score"])
                table.add(f"{case}: pure decode + score vs StreamScorer via Redis (the queue's cost)", "records/s",
                          best["score"], best["scorer"])
                row = table.add(f"{case}: one rollout actor's output vs one RewardWorker actor end to end",
                                "records/s", args.rollout_rate, best["worker"])
                served.append(row.ratio)
        finally:
            ray.shutdown()
            node.stop()
    table.notes.append(f"one RewardWorker keeps up with about {min(served):.0f} rollout actors producing "
                       f"{args.rollout_rate:g} records/s each (the last row's ratio at the largest masks)")
    table.emit(args.out)


def best_of(passes: int, runs: dict) -> dict[str, float]:
    """Highest rate of each run over ``passes`` rounds, the runs taking turns."""
    best = {name: 0.0 for name in runs}
    for _ in range(passes):
        for name, run in runs.items():
            best[name] = max(best[name], run())
    return best


if __name__ == "__main__":
    main()
