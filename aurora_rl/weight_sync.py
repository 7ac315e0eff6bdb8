"""Weight broadcast from learner rank 0 to every rollout actor.

A standalone torch.distributed process group (gloo on CPU, NCCL on GPU) made across Ray
actors from a ``TCPStore``: independent of the learner's own DeepSpeed group, so it can be
rebuilt when rollout actors come and go. What travels is the learner's trainable parameters
(LoRA, the fully trained LLM modules, encoders, projector, SAM mask decoder), packed into flat
buckets per dtype — a single large broadcast is several times faster than many small ones
(docs/BENCHMARKS.md). Each broadcast is framed by a header and a trailer carrying the policy
version; a receiver applies the weights only when both match the version it was told to
expect, so a torn transfer can never be sampled from.
"""

from __future__ import annotations

import datetime
import ipaddress
import secrets
import socket
from dataclasses import dataclass

import torch

HEADER_MAGIC = 0x5EED
IN_FLIGHT = 3  # collectives the sender keeps posted: the header or a bucket travelling, the next packed


@dataclass(frozen=True)
class TensorSpec:
    name: str
    shape: tuple[int, ...]
    dtype: str  # e.g. "float32"


@dataclass(frozen=True)
class Bucket:
    dtype: str
    entries: tuple[tuple[str, int, int, tuple[int, ...]], ...]  # (name, offset, numel, shape)

    @property
    def numel(self) -> int:
        return sum(e[2] for e in self.entries)


def plan_buckets(specs: list[TensorSpec], bucket_bytes: int) -> list[Bucket]:
    """Group tensors of one dtype into flat buckets of at most ``bucket_bytes`` (a larger tensor
    gets a bucket of its own). The order is the specs' order, so sender and receivers agree."""
    buckets: list[Bucket] = []
    by_dtype: dict[str, list[TensorSpec]] = {}
    for s in specs:
        by_dtype.setdefault(s.dtype, []).append(s)
    for dtype, group in by_dtype.items():
        size = torch.empty((), dtype=getattr(torch, dtype)).element_size()
        entries, offset = [], 0
        for s in group:
            numel = 1
            for d in s.shape:
                numel *= d
            if entries and (offset + numel) * size > bucket_bytes:
                buckets.append(Bucket(dtype, tuple(entries)))
                entries, offset = [], 0
            entries.append((s.name, offset, numel, tuple(s.shape)))
            offset += numel
        if entries:
            buckets.append(Bucket(dtype, tuple(entries)))
    return buckets


def specs_of(tensors: dict[str, torch.Tensor]) -> list[TensorSpec]:
    return [TensorSpec(n, tuple(t.shape), str(t.dtype).removeprefix("torch.")) for n, t in tensors.items()]


def pack(tensors: dict[str, torch.Tensor], bucket: Bucket, device: torch.device) -> torch.Tensor:
    """One bucket's tensors as one flat tensor of its dtype on ``device`` (the group's)."""
    return torch.cat([tensors[name].detach().reshape(-1).to(getattr(torch, bucket.dtype))
                      for name, *_ in bucket.entries]).to(device)


def unpack(buckets: list[Bucket], flats: list[torch.Tensor]) -> dict[str, torch.Tensor]:
    """The tensors of received flat buckets, as views of host copies."""
    out: dict[str, torch.Tensor] = {}
    for bucket, flat in zip(buckets, flats):
        flat = flat.cpu()
        for name, offset, numel, shape in bucket.entries:
            out[name] = flat[offset:offset + numel].view(shape)
    return out


def open_store(host: str, world_size: int, timeout_s: float) -> torch.distributed.TCPStore:
    """A group's store, listening on ``host`` alone, on a port the OS picks as it binds (``store.port``).

    ``TCPStore`` has no authentication: whoever reaches its port can read and write its keys (it
    can even list them). So it listens on the node's private address only, never on every
    interface as ``TCPStore`` does by itself, and a public ``host`` is refused. A port chosen
    first and bound later could be taken in between by another process; binding first avoids it.
    """
    address = ipaddress.ip_address(host)
    if not address.is_private:
        raise PermissionError(
            f"weight broadcast: {host} is not a private address, and the group's rendezvous (a torch "
            "TCPStore) has no authentication; start Ray on the cluster's private network "
            "(ray start --node-ip-address=<private address>)")
    sock = socket.socket(socket.AF_INET6 if address.version == 6 else socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.bind((host, 0))
        sock.listen(512)
    except OSError:
        sock.close()
        raise
    port = sock.getsockname()[1]
    # the store takes the socket over (and closes it with itself)
    return torch.distributed.TCPStore(host, port, world_size, is_master=True, wait_for_workers=False,
                                      timeout=datetime.timedelta(seconds=timeout_s), master_listen_fd=sock.detach())


def new_key_prefix() -> str:
    """A random prefix for one group's keys in its store. Members of another group (an actor that
    missed a rebuild) never meet this one's keys. Not a secret from whoever reaches the store,
    which can list its keys: the private address is what keeps others out."""
    return f"aurora-{secrets.token_hex(8)}/"


def store_at(host: str, port: int, world_size: int, timeout_s: float, key_prefix: str,
             store=None) -> torch.distributed.Store:
    """The group's view of its store: ``store`` when this member owns it (``open_store``), else a
    client of the one at ``host:port``; every key under ``key_prefix``."""
    if store is None:
        store = torch.distributed.TCPStore(host, port, world_size, is_master=False,
                                           timeout=datetime.timedelta(seconds=timeout_s))
    return torch.distributed.PrefixStore(key_prefix, store)


class BroadcastGroup:
    """One member of the broadcast group; rank 0 is the sender (the learner).

    The members meet at a store ``open_store`` made: its owner passes it as ``store`` (the
    learner's rank 0 does), every other member connects to its ``host`` and ``port``.
    """

    def __init__(self, host: str, port: int, rank: int, world_size: int, backend: str = "gloo",
                 timeout_s: float = 120.0, store: torch.distributed.TCPStore | None = None, *, key_prefix: str):
        timeout = datetime.timedelta(seconds=timeout_s)
        self.store = store_at(host, port, world_size, timeout_s, key_prefix, store)
        if backend == "nccl":
            self.pg = torch.distributed.ProcessGroupNCCL(self.store, rank, world_size)
            self.device = torch.device("cuda", torch.cuda.current_device())
        else:
            self.pg = torch.distributed.ProcessGroupGloo(self.store, rank, world_size, timeout)
            self.device = torch.device("cpu")
        self.rank = rank
        self.world_size = world_size

    def broadcast(self, tensor: torch.Tensor) -> torch.Tensor:
        self.pg.broadcast(tensor, 0).wait()
        return tensor

    def frame(self, version: int, n_buckets: int) -> torch.Tensor:
        return self.broadcast(self._frame_tensor(version, n_buckets))

    def _frame_tensor(self, version: int, n_buckets: int) -> torch.Tensor:
        return torch.tensor([HEADER_MAGIC, version, n_buckets], dtype=torch.int64, device=self.device)

    def send(self, tensors: dict[str, torch.Tensor], buckets: list[Bucket], version: int) -> int:
        """Rank 0: broadcast ``tensors`` laid out as ``buckets``; returns bytes sent.

        Collectives are posted without waiting, so bucket i+1 is packed while bucket i travels;
        at most ``IN_FLIGHT`` collectives (so packed buckets) are held at a time.
        """
        in_flight = [(self.pg.broadcast(self._frame_tensor(version, len(buckets)), 0), None)]
        sent = 0
        for bucket in buckets:
            flat = pack(tensors, bucket, self.device)
            in_flight.append((self.pg.broadcast(flat, 0), flat))  # the tensor stays referenced until done
            sent += flat.numel() * flat.element_size()
            while len(in_flight) > IN_FLIGHT:
                in_flight.pop(0)[0].wait()
        in_flight.append((self.pg.broadcast(self._frame_tensor(version, len(buckets)), 0), None))
        for work, _ in in_flight:
            work.wait()
        return sent

    def receive(self, buckets: list[Bucket], version: int) -> dict[str, torch.Tensor]:
        """Other ranks: the tensors of version ``version``; raises if the frames disagree.

        The header is checked before anything else is posted; then every bucket and the trailer
        are posted at once, so they arrive back to back.
        """
        header = self.frame(-1, -1).tolist()
        if header != [HEADER_MAGIC, version, len(buckets)]:
            raise RuntimeError(f"broadcast header {header} does not announce version {version} in {len(buckets)} buckets")
        flats = [torch.empty(b.numel, dtype=getattr(torch, b.dtype), device=self.device) for b in buckets]
        trailer = self._frame_tensor(-1, -1)
        works = [self.pg.broadcast(t, 0) for t in (*flats, trailer)]
        for work in works:
            work.wait()
        if trailer.tolist() != [HEADER_MAGIC, version, len(buckets)]:
            raise RuntimeError(f"broadcast of version {version} ended with trailer {trailer.tolist()}: discarded")
        return unpack(buckets, flats)

    def close(self) -> None:
        self.pg = None
        self.store = None
