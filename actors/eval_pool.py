"""A checkpoint over a split on N ``EvalWorker`` actors: evaluation, stage-2 mining, CoT generation.

Rows go in chunks to the workers (a free worker takes the next chunk, with a progress line per
chunk); predictions come back in row order, chunk by chunk (``stream``), so what is made from them
does not depend on N and the caller need not hold them all. ``evaluate_checkpoint`` (``aurora-rl
eval``) scores and saves them as they arrive (``aurora_rl/evaluation/scoring.py``).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Optional

from aurora_rl.config.schema import DataConfig, MetricsConfig, SamplingConfig
from aurora_rl.evaluation.clip_loading import OnBadClip
from aurora_rl.evaluation.scoring import EvaluationWriter, write_tables
from aurora_rl.services.library_logs import LOG_DIR, logs_line, worker_log


class EvalPool:
    """``num_actors`` workers holding ``checkpoint``, killed when the ``with`` block ends (then the
    line naming their logs folder, under ``label``)."""

    def __init__(self, checkpoint: str | Path, data: DataConfig, work_dir: str | Path, num_actors: int = 1,
                 kv_cache_gib: float = 1.0, max_new_tokens: int = 150, name: str = "worker", label: str = "eval",
                 gpus_per_actor: float = 0.0):
        from actors.eval_worker import EvalWorker

        self.data = dataclasses.replace(data, root=str(Path(data.root).resolve()))
        work_dir = Path(work_dir).resolve()
        self.logs, self.label = work_dir / LOG_DIR, label
        # each actor asks Ray for its GPUs (none on a CPU run); one that gets none stops by name
        self.workers = [EvalWorker.options(num_gpus=gpus_per_actor).remote(
                            str(Path(checkpoint).resolve()), self.data, str(work_dir / f"{name}{k}"), kv_cache_gib,
                            max_new_tokens, log_file=str(worker_log(work_dir, f"{name.strip('.')}{k}")),
                            gpus=gpus_per_actor, role=f"{label} actor {k}")
                        for k in range(num_actors)]

    def __enter__(self) -> "EvalPool":
        return self

    def __exit__(self, *exc) -> None:
        import ray

        for w in self.workers:
            ray.kill(w)
        print(logs_line(self.logs, self.label), flush=True)

    def stream(self, split: str, indices: Sequence[int], log, label: str, sampling: Optional[SamplingConfig] = None,
               seed: int = 0, chunk: int = 16, on_bad_clip: OnBadClip = "fail") -> Iterator[list[dict]]:
        """Rows ``indices`` of ``split`` in chunks over the workers (each busy with one chunk at a
        time), with a progress line per finished chunk. Yields each chunk's predictions in row
        order as soon as every chunk before it is in: at most one chunk per worker waits, so the
        caller holds a bounded number of predictions however long the split is. ``on_bad_clip``
        "skip": a row that cannot be read comes as a skip record (evaluation/clip_loading.py)."""
        import ray

        indices = list(indices)
        n = len(indices)
        chunks = [indices[i:i + chunk] for i in range(0, n, chunk)]
        pending, arrived, done, next_out = {}, {}, 0, 0
        started = time.monotonic()
        free = list(self.workers)
        submitted = 0
        while next_out < len(chunks):
            while free and submitted < len(chunks):
                w = free.pop()
                rows = chunks[submitted]
                pending[w.run.remote(split, rows, sampling, seed + rows[0], on_bad_clip)] = (w, submitted)
                submitted += 1
            ready, _ = ray.wait(list(pending), num_returns=1)
            worker, position = pending.pop(ready[0])
            arrived[position] = ray.get(ready[0])
            free.append(worker)
            done += len(chunks[position])
            rate = done / (time.monotonic() - started)
            log(f"[{label}] {split}: {done}/{n} clips | {rate:.2f} clips/s | ETA {(n - done) / rate:.0f} s")
            while next_out in arrived:
                yield sorted(arrived.pop(next_out), key=lambda p: (p["index"], p.get("sample", 0)))
                next_out += 1


def evaluate_checkpoint(checkpoint: str, data: DataConfig, splits: list[str], out_dir: str | Path,
                        num_actors: int = 1, metrics: MetricsConfig | None = None, max_new_tokens: int = 150,
                        kv_cache_gib: float = 1.0, log=print, gpus_per_actor: float = 0.0,
                        on_bad_clip: OnBadClip = "fail") -> dict:
    """Greedy predictions of ``checkpoint`` on ``splits``, scored and saved in ``out_dir`` as they
    arrive (none is held: memory stays flat with the number of clips). ``on_bad_clip`` "skip":
    clips that cannot be read are left out, and listed under their split's "skipped"."""
    from aurora_rl.data import build_dataset

    out_dir = Path(out_dir)
    with EvaluationWriter(metrics or MetricsConfig(), out_dir) as writer:
        with EvalPool(checkpoint, data, out_dir, num_actors, kv_cache_gib, max_new_tokens,
                      gpus_per_actor=gpus_per_actor) as pool:
            for split in splits:
                for part in pool.stream(split, range(len(build_dataset(data, split))), log, "eval",
                                        on_bad_clip=on_bad_clip):
                    writer.add(split, part)
    results = writer.results()
    write_tables(results, out_dir, title=f"Evaluation of {checkpoint}")
    return results
