"""How fast the Ref-AVS reader delivers clips: single process and through a torch DataLoader.

Generates a synthetic benchmark in a temporary folder, then reads its train split several
times and prints clips/s (best and median of the passes) for:
  - the reader called in a loop (one process),
  - torch DataLoader, 2 workers, batch 8, collate_clips,
for each audio feature kind. Run: .venv/bin/python bench/data_loading.py [--videos N] [--passes P]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from aurora_rl.data import RefAVSDataset, collate_clips
from aurora_rl.data.synthetic import generate_benchmark


def clips_per_second(run, clips: int, passes: int) -> tuple[float, float]:
    rates = []
    for _ in range(passes):
        start = time.perf_counter()
        run()
        rates.append(clips / (time.perf_counter() - start))
    return max(rates), statistics.median(rates)


def single_process(ds) -> None:
    for i in range(len(ds)):
        ds[i]


def data_loader(ds, workers: int, batch: int):
    def run() -> None:
        loader = torch.utils.data.DataLoader(ds, batch_size=batch, num_workers=workers, collate_fn=collate_clips)
        for _ in loader:
            pass

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=int, default=60)
    parser.add_argument("--passes", type=int, default=3)
    parser.add_argument("--image-size", type=int, default=64)
    args = parser.parse_args()
    torch.set_num_threads(1)  # as in a DataLoader worker; the training process owns the cores
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "synth"
        start = time.perf_counter()
        generate_benchmark(root, args.videos, seed=0)
        print(f"generated {args.videos} videos in {time.perf_counter() - start:.1f} s")
        rows = []
        for features in ("kaldi_fbank", "whisper_log_mel"):
            ds = RefAVSDataset(root, "train", image_size=args.image_size, mask_size=args.image_size, features=features)
            n = len(ds)
            best, med = clips_per_second(lambda: single_process(ds), n, args.passes)
            rows.append((features, "single process", n, best, med))
            best, med = clips_per_second(data_loader(ds, workers=2, batch=8), n, args.passes)
            rows.append((features, "DataLoader, 2 workers, batch 8", n, best, med))
    print(f"\n{'features':<16} {'loader':<31} {'clips':>5} {'best clips/s':>12} {'median':>8}")
    for features, loader, n, best, med in rows:
        print(f"{features:<16} {loader:<31} {n:>5} {best:>12.0f} {med:>8.0f}")
    print(f"\n(10 frames of {args.image_size} px, masks of {args.image_size} px, 2 s of 16 kHz audio per clip; "
          f"{torch.get_num_threads()} torch thread(s) in this process)")


if __name__ == "__main__":
    main()
