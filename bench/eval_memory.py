"""Memory of an evaluation as the split grows: predictions held until the end (before) against
scored and written chunk by chunk (now, ``EvaluationWriter`` over ``EvalPool.stream``).

    PYTHONPATH=. .venv/bin/python bench/eval_memory.py [--clips 100 2000] [--out table.md]

A tiny random policy evaluates the first N rows of a synthetic benchmark's training split (its
largest) on two evaluation actors, once per way and size. Sampled every 0.2 s: the driver's
resident memory, the Ray object store's bytes in use, and the evaluation workers' resident
memory (their sum). Each figure is the peak over the run; "growth" is the peak at the largest
size over the peak at the smallest. Mining (stage 2) and CoT generation hold only each
completion's text and read the same stream.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.side_by_side import Table  # noqa: E402

MIB = 2**20


class Peaks(threading.Thread):
    """The peaks of the driver's RSS, the object store's use and the eval workers' summed RSS."""

    def __init__(self, ray_address: str, every_s: float = 0.2):
        super().__init__(daemon=True)
        from ray._private.internal_api import get_state_from_address

        self.state = get_state_from_address(ray_address)
        self.every_s = every_s
        self.driver = self.store = self.workers = 0
        self.halt = threading.Event()

    def run(self) -> None:
        from ray._private.internal_api import get_memory_info_reply

        me = psutil.Process(os.getpid())
        while not self.halt.wait(self.every_s):
            self.driver = max(self.driver, me.memory_info().rss)
            self.store = max(self.store, get_memory_info_reply(self.state).store_stats.object_store_bytes_used)
            rss = 0
            for proc in psutil.process_iter(["cmdline", "memory_info"]):
                if "ray::EvalWorker" in " ".join(proc.info["cmdline"] or []):
                    rss += proc.info["memory_info"].rss
            self.workers = max(self.workers, rss)

    def stop(self) -> "Peaks":
        self.halt.set()
        self.join()
        return self


def evaluate(way: str, checkpoint: Path, data, out: Path) -> None:
    """One evaluation of the training split's rows, ``held`` (before) or ``streamed`` (now)."""
    from actors.eval_pool import EvalPool, evaluate_checkpoint
    from aurora_rl.config.schema import MetricsConfig
    from aurora_rl.evaluation.scoring import EvaluationWriter

    quiet = lambda line: None  # noqa: E731
    if way == "streamed":
        evaluate_checkpoint(str(checkpoint), data, ["train"], out, 2, MetricsConfig(), max_new_tokens=8, log=quiet)
        return
    with EvalPool(checkpoint, data, out, 2, max_new_tokens=8) as pool:  # every prediction held, then scored
        from aurora_rl.data import build_dataset

        held = [p for part in pool.stream("train", range(len(build_dataset(data, "train"))), quiet, "eval")
                for p in part]
    with EvaluationWriter(MetricsConfig(), out) as writer:
        writer.add("train", held)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, nargs=2, default=[100, 2000], metavar=("SMALL", "LARGE"))
    parser.add_argument("--out", type=Path, default=None, help="also write the markdown table here")
    args = parser.parse_args()

    from aurora_rl.config.schema import DataConfig, ServicesConfig
    from aurora_rl.data.synthetic import generate_benchmark
    from aurora_rl.services import run_services
    from bench.policy_sizes import write_checkpoint

    small, large = args.clips
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        videos = max(60, large // 3)  # the generator writes several training rows per video
        generate_benchmark(tmp / "data", videos=videos, seed=0)
        checkpoint, _ = write_checkpoint("tiny", tmp / "ckpt", dtype="float32")
        peaks: dict[tuple[str, int], Peaks] = {}
        with run_services(ServicesConfig(), log=lambda line: None, need_redis=False) as services:
            for n in (small, large):
                data = DataConfig(root=str(tmp / "data"), max_samples=n)
                for way in ("held", "streamed"):
                    sampler = Peaks(services.ray_address)
                    sampler.start()
                    started = time.monotonic()
                    evaluate(way, checkpoint, data, tmp / f"{way}-{n}")
                    peaks[(way, n)] = sampler.stop()
                    print(f"[bench] {way}, {n} clips: {time.monotonic() - started:.0f} s", flush=True)

    table = Table(f"Evaluation memory, {small} and {large} clips (2 actors, tiny policy, masks 10 x 64 x 64)",
                  baseline="predictions held until the end", ours="scored and written chunk by chunk")
    for label, attr in (("driver peak RSS", "driver"), ("object store peak", "store"),
                        ("eval workers' peak RSS (sum)", "workers")):
        for n in (small, large):
            table.add(f"{label}, {n} clips", "MiB", getattr(peaks[("held", n)], attr) / MIB,
                      getattr(peaks[("streamed", n)], attr) / MIB)
    for way, column in (("held", "before"), ("streamed", "now")):
        growth = ", ".join(f"{label} {getattr(peaks[(way, large)], attr) / max(1, getattr(peaks[(way, small)], attr)):.2f}x"
                           for label, attr in (("driver", "driver"), ("object store", "store"),
                                               ("workers", "workers")))
        table.notes.append(f"growth from {small} to {large} clips, {column}: {growth}")
    table.notes.append("Lower is better here (memory): ours / baseline < 1 means less memory.")
    table.emit(args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
