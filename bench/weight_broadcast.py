"""Weight broadcast: the learner -> rollout broadcast against a raw gloo broadcast of one flat tensor.

    PYTHONPATH=. .venv/bin/python bench/weight_broadcast.py [--sizes tiny 0.5b] [--receivers 1]
        [--bucket-mb 1 16 64 256] [--reps 3] [--out table.md]

A learner process (rank 0: the policy's trainable parameters, as ``LearnerRank`` sends them)
and ``--receivers`` rollout processes (each a ``PolicyEngine`` with its vLLM engine) form one
``BroadcastGroup`` (TCPStore + gloo). In the same processes and group, taking turns:
  - baseline: one flat uint8 tensor of the same byte count, ``pg.broadcast`` from rank 0;
  - ours: ``send`` / ``receive`` (flat buckets per dtype, version header and trailer) at the
    default ``broadcast.bucket_mb`` and the other ``--bucket-mb`` sizes (transfer only);
  - ours end to end: the default buckets plus ``PolicyEngine.load_trainable`` (HF modules and
    the vLLM reload), which is what a step's broadcast phase costs.
A transfer's time runs from the first member starting to the last member finishing.
Sizes: ``tiny`` = the tiny GRPO policy, float32, everything trained (the CPU default);
``0.5b`` = a Qwen2-0.5B-shaped decoder in bf16, trained in full (LoRA off): ~0.7 GB a broadcast.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from bench.policy_sizes import write_checkpoint
from bench.side_by_side import Table
from bench.worker_process import WorkerProcess


class Member:
    """One process of the broadcast group: the learner (rank 0) or a rollout engine."""

    def __init__(self, rank: int, checkpoint: str, work_dir: str):
        import torch

        from aurora_rl.model.checkpoint import load_policy

        torch.set_num_threads(1)
        self.rank = rank
        self.group = self.store = None
        self.apply_s: list[float] = []
        if rank == 0:
            policy = load_policy(checkpoint)[0]
            self.state = {n: p.detach() for n, p in policy.named_parameters() if p.requires_grad}
        else:
            from actors.policy_engine import PolicyEngine

            self.engine = PolicyEngine(checkpoint, work_dir, kv_cache_gib=1.0)

    def specs(self) -> list:
        from aurora_rl.weight_sync import specs_of

        return specs_of(self.state)

    def open_store(self, world: int) -> int:
        """Rank 0: the store the group meets at, as the learner opens it; its port."""
        from aurora_rl.weight_sync import open_store

        self.store = open_store("127.0.0.1", world, 300)
        return self.store.port

    def join(self, port: int, world: int) -> bool:
        from aurora_rl.weight_sync import BroadcastGroup

        store = self.store if self.rank == 0 else None
        self.group = BroadcastGroup("127.0.0.1", port, self.rank, world, "gloo", timeout_s=300, store=store,
                                    key_prefix="bench/")
        return True

    def raw(self, nbytes: int) -> tuple[float, float]:
        """One flat tensor through the group's process group."""
        import torch

        flat = torch.empty(nbytes, dtype=torch.uint8)
        start = time.monotonic()
        self.group.broadcast(flat)
        return start, time.monotonic()

    def transfer(self, buckets: list, version: int, apply: bool) -> tuple[float, float]:
        start = time.monotonic()
        if self.rank == 0:
            self.group.send(self.state, buckets, version)
        else:
            state = self.group.receive(buckets, version)
            if apply:
                received = time.monotonic()
                self.engine.load_trainable(state, version)
                self.apply_s.append(time.monotonic() - received)
        return start, time.monotonic()

    def apply_seconds(self) -> list[float]:
        return self.apply_s if self.rank else []


def collective(members: list[WorkerProcess], method: str, *args) -> float:
    for m in members:
        m.send(method, *args)
    spans = [m.result(method) for m in members]
    return max(end for _, end in spans) - min(start for start, _ in spans)


def measure_size(size: str, args, tmp: Path, table: Table) -> None:
    from aurora_rl.config.schema import BroadcastConfig
    from aurora_rl.weight_sync import plan_buckets

    checkpoint, _ = write_checkpoint(size, tmp / f"ckpt-{size}", dtype="float32" if size == "tiny" else "bfloat16",
                                     lora=False)
    world = args.receivers + 1
    members = [WorkerProcess(Member, r, str(checkpoint), str(tmp / f"work-{size}-{r}")) for r in range(world)]
    try:
        specs = members[0].call("specs")
        port = members[0].call("open_store", world)
        for m in members:
            m.send("join", port, world)
        for m in members:
            m.result("join")
        nbytes = sum(_nbytes(s) for s in specs)
        default_mb = BroadcastConfig().bucket_mb
        plans = {mb: plan_buckets(specs, int(mb * 2**20)) for mb in sorted({default_mb, *args.bucket_mb})}
        runs = {"raw": lambda: collective(members, "raw", nbytes)}
        for mb, buckets in plans.items():
            runs[f"ours/{mb:g}"] = lambda b=buckets: collective(members, "transfer", b, 1, False)
        runs["ours+apply"] = lambda: collective(members, "transfer", plans[default_mb], 1, True)
        times = {name: [] for name in runs}
        for rep in range(args.reps + 1):  # the first round warms up
            for name, run in runs.items():
                elapsed = run()
                if rep:
                    times[name].append(elapsed)
        apply_s = min(min(m.call("apply_seconds")) for m in members[1:])
    finally:
        for m in members:
            m.close()
    gbps = {name: nbytes / min(t) / 1e9 for name, t in times.items()}
    label = f"{size}: {nbytes / 2**20:,.1f} MiB in {len(specs)} tensors to {args.receivers} receiver(s)"
    for mb, buckets in plans.items():
        mark = " (default)" if mb == default_mb else ""
        table.add(f"{label}, {mb:g} MB buckets{mark} ({len(buckets)} buckets), transfer", "GB/s", gbps["raw"],
                  gbps[f"ours/{mb:g}"])
    table.add(f"{label}, {default_mb:g} MB buckets + load_trainable (HF + vLLM reload)", "GB/s", gbps["raw"],
              gbps["ours+apply"])
    table.notes.append(f"{size}: raw transfer {min(times['raw']) * 1e3:.1f} ms; end to end "
                       f"{min(times['ours+apply']) * 1e3:.1f} ms, of which load_trainable (HF modules, merge, vLLM "
                       f"reload) {apply_s * 1e3:.1f} ms")


def _nbytes(spec) -> int:
    import torch

    numel = 1
    for d in spec.shape:
        numel *= d
    return numel * torch.empty((), dtype=getattr(torch, spec.dtype)).element_size()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", default=["tiny", "0.5b"], choices=["tiny", "0.5b"])
    parser.add_argument("--receivers", type=int, default=1)
    parser.add_argument("--bucket-mb", type=float, nargs="*", default=[1, 16, 256])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None, help="also write the markdown table here")
    args = parser.parse_args()
    table = Table("Weight broadcast, learner -> rollout (gloo, this CPU)", "raw gloo broadcast, one flat tensor",
                  "BroadcastGroup send/receive")
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes:
            measure_size(size, args, Path(tmp), table)
    table.notes.append(f"best of {args.reps} interleaved repetitions after one warm-up round; one process per "
                       "member, one torch thread each; time from the first member starting to the last finishing")
    table.emit(args.out)


if __name__ == "__main__":
    main()
