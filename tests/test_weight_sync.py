"""The weight broadcast: bucket plans, and exact delivery of several versions in a row over one gloo group."""

from __future__ import annotations

import gc
import multiprocessing as mp

import pytest
import torch

from aurora_rl.weight_sync import BroadcastGroup, new_key_prefix, open_store, plan_buckets, specs_of


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


def meet(rank: int, world: int, ports, timeout_s: float) -> BroadcastGroup:
    """Rank 0 opens the store and hands its port to the others, as the learner's rank 0 does."""
    if rank == 0:
        store, prefix = open_store("127.0.0.1", world, timeout_s), new_key_prefix()
        for _ in range(world - 1):
            ports.put((store.port, prefix))
        return BroadcastGroup("127.0.0.1", store.port, 0, world, "gloo", timeout_s, store=store, key_prefix=prefix)
    port, prefix = ports.get(timeout=timeout_s)
    return BroadcastGroup("127.0.0.1", port, rank, world, "gloo", timeout_s, key_prefix=prefix)


def member(rank: int, world: int, ports, results) -> None:
    buckets = plan_buckets(specs_of(weights(0)), bucket_bytes=2500)
    group = meet(rank, world, ports, timeout_s=30.0)
    for version in (1, 2, 3):  # back to back: every posted collective must pair with the right one
        if rank == 0:
            group.send(weights(version), buckets, version)
        else:
            state = group.receive(buckets, version)
            exact = state.keys() == weights(version).keys() and all(
                torch.equal(state[n], t) for n, t in weights(version).items())
            results.put((rank, version, exact))


def test_every_receiver_gets_every_version_exactly():
    gc.collect()  # no store of an earlier test may be collected in a forked child (torch aborts there)
    ctx = mp.get_context("fork")
    results = ctx.Queue()
    ports = ctx.Queue()
    procs = [ctx.Process(target=member, args=(r, 3, ports, results)) for r in range(3)]
    for p in procs:
        p.start()
    got = sorted(results.get(timeout=60) for _ in range(2 * 3))
    for p in procs:
        p.join(timeout=30)
    assert got == [(r, v, True) for r in (1, 2) for v in (1, 2, 3)]
    assert all(p.exitcode == 0 for p in procs)


def test_the_store_listens_on_its_port_from_the_moment_it_is_opened():
    """No other process can take the port the members are told (a port chosen free and bound
    later can be, on a busy node: the members then wait out the timeout on a stranger's socket)."""
    import errno
    import socket

    store = open_store("127.0.0.1", 2, 10.0)
    with socket.socket() as s:
        with pytest.raises(OSError) as taken:
            s.bind(("127.0.0.1", store.port))
    assert taken.value.errno == errno.EADDRINUSE


def test_the_store_listens_on_the_private_address_alone_and_keeps_each_group_under_its_prefix():
    """TCPStore has no authentication: the store listens on the address it was given, never on
    every interface (TCPStore's own choice); a public address is refused; the group's keys all
    sit under its random prefix."""
    import psutil

    store = open_store("127.0.0.1", 1, 10.0)
    listening = [c.laddr for c in psutil.Process().net_connections("inet")
                 if c.status == psutil.CONN_LISTEN and c.laddr.port == store.port]
    assert [a.ip for a in listening] == ["127.0.0.1"]
    prefix = new_key_prefix()
    assert prefix != new_key_prefix() and len(prefix) >= 16
    group = BroadcastGroup("127.0.0.1", store.port, 0, 1, "gloo", 10.0, store=store, key_prefix=prefix)
    group.broadcast(torch.ones(4))
    keys = store.list_keys()
    assert keys and all(k.startswith(prefix) for k in keys), keys
    for public in ("8.8.8.8", "2001:4860:4860::8888"):
        with pytest.raises(PermissionError, match="not a private address"):
            open_store(public, 1, 10.0)
