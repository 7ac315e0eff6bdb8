"""Memory of an evaluation as the split grows: predictions held until the end (before) against
scored and written chunk by chunk (now, ``EvaluationWriter`` over ``EvalPool.stream``).

    PYTHONPATH=. .venv/bin/python bench/eval_memory.py [--clips 100 2000] [--out table.md]

A tiny random policy evaluates the first N rows of a synthetic benchmark's training split (its
largest) on ``--actors`` evaluation actors (2), once per way and size. Sampled every 0.2 s: the driver's
private memory (USS: resident pages of its own; a numpy array that Ray returns zero-copy lives in
the shared object store, counted there), the Ray object store's bytes in use, and the evaluation
workers' private memory (their sum). Each figure is the peak over the run; "growth" is the peak
at the largest size over the peak at the smallest. Mining (stage 2) and CoT generation hold only each
completion's text and read the same stream.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

from bench.side_by_side import Table

MIB = 2**20


def object_store_stats(ray_address: str):
    """A function returning the object store's stats, over one gRPC channel to the raylet (a
    channel per call, as Ray's own helper opens, would grow the driver's memory with time)."""
    from ray._private.grpc_utils import init_grpc_channel
    from ray._private.internal_api import get_state_from_address
    from ray.core.generated import node_manager_pb2, node_manager_pb2_grpc

    node = next(n for n in get_state_from_address(ray_address).node_table() if n["Alive"])
    channel = init_grpc_channel(f"{node['NodeManagerAddress']}:{node['NodeManagerPort']}")
    stub = node_manager_pb2_grpc.NodeManagerServiceStub(channel)
    request = node_manager_pb2.FormatGlobalMemoryInfoRequest(include_memory_info=False)
    return lambda: stub.FormatGlobalMemoryInfo(request, timeout=60).store_stats


class Peaks(threading.Thread):
    """The peaks of the driver's USS, the object store's use and the eval workers' summed USS."""

    def __init__(self, ray_address: str, every_s: float = 0.2):
        super().__init__(daemon=True)
        self.store_stats = object_store_stats(ray_address)
        self.every_s = every_s
        self.driver = self.store = self.workers = 0
        self.halt = threading.Event()

    def run(self) -> None:
        me = psutil.Process(os.getpid())
        while not self.halt.wait(self.every_s):
            self.driver = max(self.driver, me.memory_full_info().uss)
            self.store = max(self.store, self.store_stats().object_store_bytes_used)
            uss = 0
            for proc in psutil.process_iter(["cmdline"]):
                if "ray::EvalWorker" in " ".join(proc.info["cmdline"] or []):
                    try:
                        uss += proc.memory_full_info().uss
                    except psutil.Error:  # it ended meanwhile
                        pass
            self.workers = max(self.workers, uss)

    def stop(self) -> "Peaks":
        self.halt.set()
        self.join()
        return self


def evaluate(way: str, checkpoint: Path, data, out: Path, actors: int) -> int:
    """One evaluation of the training split's rows, ``held`` (before) or ``streamed`` (now); the
    number of clips evaluated."""
    from actors.eval_pool import EvalPool, evaluate_checkpoint
    from aurora_rl.config.schema import MetricsConfig
    from aurora_rl.evaluation.scoring import EvaluationWriter

    quiet = lambda line: None  # noqa: E731
    if way == "streamed":
        results = evaluate_checkpoint(str(checkpoint), data, ["train"], out, actors, MetricsConfig(), max_new_tokens=8,
                                      log=quiet)
        return results["train"]["clips"]
    with EvalPool(checkpoint, data, out, actors, max_new_tokens=8) as pool:  # every prediction held, then scored
        from aurora_rl.data import build_dataset

        held = [p for part in pool.stream("train", range(len(build_dataset(data, "train"))), quiet, "eval")
                for p in part]
    with EvaluationWriter(MetricsConfig(), out) as writer:
        writer.add("train", held)
    return len(held)


def measure(way: str, n: int, data_root: Path, checkpoint: Path, out: Path, actors: int) -> dict:
    """One evaluation in this process (with its own Ray node): the clips and the peaks, in bytes."""
    from aurora_rl.config.schema import DataConfig, ServicesConfig
    from aurora_rl.services import run_services

    with run_services(ServicesConfig(), log=lambda line: None, need_redis=False) as services:
        sampler = Peaks(services.ray_address)
        sampler.start()
        started = time.monotonic()
        clips = evaluate(way, checkpoint, DataConfig(root=str(data_root), max_samples=n), out, actors)
        sampler.stop()
    return {"clips": clips, "seconds": time.monotonic() - started, "driver": sampler.driver, "store": sampler.store,
            "workers": sampler.workers}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, nargs=2, default=[100, 2000], metavar=("SMALL", "LARGE"))
    parser.add_argument("--actors", type=int, default=2, help="evaluation actors")
    parser.add_argument("--out", type=Path, default=None, help="also write the markdown table here")
    parser.add_argument("--one", nargs=4, default=None, metavar=("WAY", "N", "DATA", "CKPT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:  # a child: one measurement, its figures as JSON on the last line
        way, n, data_root, checkpoint = args.one
        print(json.dumps(measure(way, int(n), Path(data_root), Path(checkpoint), Path(data_root).parent / f"{way}-{n}",
                                 args.actors)))
        return 0

    from aurora_rl.data.synthetic import generate_benchmark
    from bench.policy_sizes import write_checkpoint

    small, large = args.clips
    peaks: dict[tuple[str, int], dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        generate_benchmark(tmp / "data", videos=max(60, large // 2 + 20), seed=0)  # 70 % train videos, ~3 rows each
        checkpoint, _ = write_checkpoint("tiny", tmp / "ckpt", dtype="float32")
        for n in (small, large):
            for way in ("held", "streamed"):  # each in a fresh process: a heap grown by one run is not the next's
                child = subprocess.run([sys.executable, __file__, "--one", way, str(n), str(tmp / "data"),
                                        str(checkpoint), "--actors", str(args.actors)], capture_output=True, text=True,
                                       timeout=3600,
                                       env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
                if child.returncode != 0:
                    print(child.stdout[-2000:] + child.stderr[-4000:], file=sys.stderr)
                    return 1
                peaks[(way, n)] = json.loads(child.stdout.strip().splitlines()[-1])
                clips = peaks[(way, n)]["clips"]
                print(f"[bench] {way}, {clips} clips: {peaks[(way, n)]['seconds']:.0f} s", flush=True)
                if clips != n:
                    print(f"[bench] the training split has {clips} rows, not {n}", file=sys.stderr)
                    return 1

    table = Table(f"Evaluation memory, {small} and {large} clips ({args.actors} actors, tiny policy, masks 10 x 64 x 64)",
                  baseline="predictions held until the end", ours="scored and written chunk by chunk")
    for label, key in (("driver peak USS", "driver"), ("object store peak", "store"),
                       ("eval workers' peak USS (sum)", "workers")):
        for n in (small, large):
            table.add(f"{label}, {n} clips", "MiB", peaks[("held", n)][key] / MIB, peaks[("streamed", n)][key] / MIB)
    for way, column in (("held", "before"), ("streamed", "now")):
        growth = ", ".join(f"{label} {peaks[(way, large)][key] / max(1, peaks[(way, small)][key]):.2f}x"
                           for label, key in (("driver", "driver"), ("object store", "store"), ("workers", "workers")))
        table.notes.append(f"growth from {small} to {large} clips, {column}: {growth}")
    table.notes.append("Each measurement runs in a process of its own, with its own Ray node. Lower is better here "
                       "(memory): ours / baseline < 1 means less memory.")
    table.emit(args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
