"""The weight broadcast: bucket plans, and exact delivery of several versions in a row over one gloo group."""

from __future__ import annotations

import multiprocessing as mp

import torch

from aurora_rl.services.process import free_port
from aurora_rl.weight_sync import BroadcastGroup, plan_buckets, specs_of


def weights(version: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(version)
    out = {f"block{i}.weight": torch.randn(300 + i, generator=g) for i in range(5)}
    out["head.weight"] = torch.randn(40, 30, generator=g).to(torch.bfloat16)
    out["norm.weight"] = torch.randn(7, generator=g)
    return out


def test_buckets_group_by_dtype_in_order_and_respect_the_size():
    buckets = plan_buckets(specs_of(weights(0)), bucket_bytes=2500)
    assert [b.dtype for b in buckets] == ["float32"] * 3 + ["bfloat16"]  # blocks in pairs, then block4 + norm
    names = [e[0] for b in buckets for e in b.entries]
    assert names == [f"block{i}.weight" for i in range(5)] + ["norm.weight", "head.weight"]
    assert all(b.numel * 4 <= 2500 or len(b.entries) == 1 for b in buckets if b.dtype == "float32")
    assert buckets[-1].numel == 1200  # a tensor over the size gets a bucket of its own


def member(rank: int, world: int, port: int, results) -> None:
    buckets = plan_buckets(specs_of(weights(0)), bucket_bytes=2500)
    group = BroadcastGroup("127.0.0.1", port, rank, world, "gloo", timeout_s=30.0)
    for version in (1, 2, 3):  # back to back: every posted collective must pair with the right one
        if rank == 0:
            group.send(weights(version), buckets, version)
        else:
            state = group.receive(buckets, version)
            exact = state.keys() == weights(version).keys() and all(
                torch.equal(state[n], t) for n, t in weights(version).items())
            results.put((rank, version, exact))


def test_every_receiver_gets_every_version_exactly():
    ctx = mp.get_context("fork")
    results = ctx.Queue()
    port = free_port("127.0.0.1")
    procs = [ctx.Process(target=member, args=(r, 3, port, results)) for r in range(3)]
    for p in procs:
        p.start()
    got = sorted(results.get(timeout=60) for _ in range(2 * 3))
    for p in procs:
        p.join(timeout=30)
    assert got == [(r, v, True) for r in (1, 2) for v in (1, 2, 3)]
    assert all(p.exitcode == 0 for p in procs)
