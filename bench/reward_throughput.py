"""How many rollout records per second the reward path scores.

Generates a synthetic benchmark, builds rollout records with 10-frame masks (the ground truth
shifted by 2 px, so IoU < 1 and the RLE has realistic runs), and prints records/s for:
  - baseline: msgpack decode + RLE decode + score_record in a loop (ground truth cached),
  - StreamScorer in this process through Redis (read, score, Lua commit + ack),
  - one RewardWorker Ray actor end to end (records published first; timed from run() to the
    last scored record in the scored stream; its ground-truth cache starts cold),
for each mask size; best of ``--passes`` (the machine is shared). Private Redis and Ray node are
started and stopped by the benchmark.
Run: .venv/bin/python bench/reward_throughput.py [--records N] [--passes P] [--mask-sizes 64 224]
"""

from __future__ import annotations

import argparse
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np

from aurora_rl.config.schema import QueueConfig, RewardConfig
from aurora_rl.data.synthetic import generate_benchmark
from aurora_rl.prompts.answer_format import compose_answer
from aurora_rl.record_stream import FIELD, RecordStream
from aurora_rl.records import RolloutRecord, decode, encode
from rewards.ground_truth import GroundTruth
from rewards.reward_functions import score_record
from rewards.stream_scorer import GROUP, StreamScorer, request_stop, scorer_client


def build_payloads(root: Path, mask_size: int, count: int) -> list[bytes]:
    truth = GroundTruth(root, "train", mask_size)
    uids = sorted(truth.rows)
    payloads = []
    for i in range(count):
        uid = uids[(i // 3) % len(uids)]
        t = truth(uid)
        record = RolloutRecord(
            uid=uid, group_id=f"g{i // 3}", sample_index=i % 3, group_size=3, policy_version=0,
            prompt_token_ids=np.arange(40), completion_token_ids=np.arange(60), sampling_logprobs=np.zeros(60),
            completion_text=compose_answer("a red circle", "a low beat", "the first sound", t.target_class),
        ).with_masks(np.roll(t.masks.astype(bool), 2, axis=2))
        payloads.append(encode(record))
    return payloads


def pure_rate(root: Path, mask_size: int, payloads: list[bytes]) -> float:
    truth = GroundTruth(root, "train", mask_size)
    cfg = RewardConfig()
    for p in payloads:  # warm the ground-truth cache: this row measures the scoring alone
        truth(decode(p).uid)
    start = time.perf_counter()
    for p in payloads:
        record = decode(p)
        t = truth(record.uid)
        score_record(record, t.masks, t.target_class, cfg)
    return len(payloads) / (time.perf_counter() - start)


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
    worker = RewardWorker.remote(redis_url, vars(queue), {}, str(root), mask_size, "bench")
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
    parser.add_argument("--rollout-rate", type=float, default=30.0,
                        help="records/s one rollout actor produces (tens on this CPU)")
    parser.add_argument("--mask-sizes", type=int, nargs="+", default=[64, 224])
    args = parser.parse_args()

    import ray

    from aurora_rl.services.ray_cluster import LocalRayNode
    from aurora_rl.services.redis_server import RedisServer

    rows = []
    with tempfile.TemporaryDirectory() as tmp, RedisServer() as redis_server:
        root = Path(tmp) / "synth"
        generate_benchmark(root, args.videos, seed=0)
        node = LocalRayNode(num_cpus=2, include_dashboard=False).start()
        try:
            node.connect(log_to_driver=False)
            for size in args.mask_sizes:
                payloads = build_payloads(root, size, args.records)
                kib = sum(map(len, payloads)) / len(payloads) / 1024
                passes = range(args.passes)
                best = max(pure_rate(root, size, payloads) for _ in passes)
                rows.append((size, kib, "baseline: decode + score_record", best, None))
                best = max(in_process_rate(redis_server.url, root, size, payloads) for _ in passes)
                rows.append((size, kib, "StreamScorer via Redis (in process)", best, None))
                rate, capacity = max(worker_rate(redis_server.url, root, size, payloads) for _ in passes)
                rows.append((size, kib, "ours: RewardWorker actor via Redis", rate, capacity))
        finally:
            ray.shutdown()
            node.stop()
    print(f"\n{args.records} records of 10 frames each, synthetic ground truth, {args.videos} videos")
    print(f"{'mask':>5} {'KiB/rec':>8} {'path':<38} {'records/s':>10} {'busy-time rec/s':>16}")
    for size, kib, path, rate, capacity in rows:
        cap = f"{capacity:>16.0f}" if capacity is not None else f"{'':>16}"
        print(f"{size:>5} {kib:>8.1f} {path:<38} {rate:>10.0f} {cap}")
    slowest = min(rate for *_, path, rate, cap in rows if path.startswith("ours"))
    print(f"\nOne reward worker scores at least {slowest:.0f} records/s end to end here, so it keeps up with about "
          f"{slowest / args.rollout_rate:.0f} rollout actors at {args.rollout_rate:.0f} records/s each.")


if __name__ == "__main__":
    main()
