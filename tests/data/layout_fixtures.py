"""Tiny datasets written by hand in the official Ref-AVS and AVSBench layouts (not by the generator).

Frame t of every Ref-AVS clip is a flat grey of level 20 * t. The mask of object fid in frame t
is a rectangle whose left edge moves with t (``expected_mask``), so tests can check that the
right file reached the right place.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from PIL import Image

from aurora_rl.data.audio_features import write_wav

SIZE = 32  # frame and mask size on disk

# (csv vid column, uid, split, fid, exp). The first row's vid column is deliberately not the
# folder: like the official loader, the reader must derive the folder from the uid.
ROWS = [
    ("encoded-0001", "-1HyqEM_VwM_137000_147000_piano_1", "train", 0, "The object making a sound by being played by the man."),
    ("-1HyqEM_VwM_137000_147000", "-1HyqEM_VwM_137000_147000_car_1", "train", 1, "The car on a road."),
    ("-5-tOp4t_kU_0_10000", "-5-tOp4t_kU_0_10000_helicopter_1", "test_s", 0, "The object, making the loudest sound."),
    ("--KCIeTv6PM_14000_24000", "--KCIeTv6PM_14000_24000_cat_1", "val", 1, "The cat appearing through the entire video."),
    ("--KCIeTv6PM_14000_24000", "--KCIeTv6PM_14000_24000_dog_1", "test_n", 2, "The dog on the left."),
]
VIDS = ["-1HyqEM_VwM_137000_147000", "-5-tOp4t_kU_0_10000", "--KCIeTv6PM_14000_24000"]
AUDIO_RATES = {VIDS[0]: (16000, 1), VIDS[1]: (44100, 2), VIDS[2]: (16000, 1)}  # (rate, channels)


def expected_mask(fid: int, t: int, size: int = SIZE) -> np.ndarray:
    """uint8 [size, size] in {0, 1}: the ground truth of object fid in frame t (fid 2 = null: empty)."""
    m = np.zeros((size, size), dtype=np.uint8)
    if fid == 2:
        return m
    top = 4 if fid == 0 else 18
    m[top : top + 8, t : t + 10] = 1
    return m


def write_pcm16(path: Path, signal: np.ndarray, rate: int) -> None:
    """[N] or [N, channels] float in [-1, 1] -> 16-bit PCM WAV."""
    import wave

    data = np.round(np.clip(signal, -1, 1) * 32767).astype("<i2")
    channels = 1 if data.ndim == 1 else data.shape[1]
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(data.tobytes())


def write_refavs_fixture(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    with (root / "metadata.csv").open("w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["vid", "uid", "split", "fid", "exp"])
        w.writerows(ROWS)
    for vid in VIDS:
        frames = root / "media" / vid / "frames"
        frames.mkdir(parents=True)
        for t in range(10):
            Image.new("RGB", (SIZE, SIZE), (20 * t,) * 3).save(frames / f"{t}.jpg", quality=95)
        rate, channels = AUDIO_RATES[vid]
        tone = 0.5 * np.sin(2 * np.pi * 440 * np.arange(rate) / rate)
        write_pcm16(root / "media" / vid / "audio.wav", tone if channels == 1 else np.stack([tone, tone], 1), rate)
    for _, uid, _, fid, _ in ROWS:
        folder = root / "gt_mask" / uid.rsplit("_", 2)[0] / f"fid_{fid}"
        folder.mkdir(parents=True)
        for t in range(10):
            Image.fromarray(expected_mask(fid, t) * 255, mode="L").save(folder / f"{t:05d}.png")
    return root


AVS_S4 = [("clipA", "dog_barking", "train"), ("clipB", "helicopter", "test")]
AVS_MS3 = [("clipM", "train"), ("clipN", "val")]


def write_avsbench_fixture(root: Path, variant: str) -> Path:
    """A two-clip AVSBench folder (S4 or MS3 layout), frames SIZE x SIZE, 1 s of 16 kHz audio."""
    root.mkdir(parents=True, exist_ok=True)
    data = root / f"{variant}_data"
    tone = 0.3 * np.sin(2 * np.pi * 300 * np.arange(16000) / 16000)
    with (root / f"{variant}_meta_data.csv").open("w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        if variant == "s4":
            w.writerow(["name", "start", "category", "split"])
            w.writerows([(n, 0, c, s) for n, c, s in AVS_S4])
        else:
            w.writerow(["video_id", "split"])
            w.writerows(AVS_MS3)
    clips = [(n, c, s) for n, c, s in AVS_S4] if variant == "s4" else [(n, "", s) for n, s in AVS_MS3]
    for name, category, split in clips:
        sub = Path(split) / category / name if variant == "s4" else Path(split) / name
        frame_dir = data / "visual_frames" / (sub if variant == "s4" else name)
        frame_dir.mkdir(parents=True)
        for i in range(1, 6):
            fname = f"{name}_{i}.png" if variant == "s4" else f"{name}.mp4_{i}.png"
            Image.new("RGB", (SIZE, SIZE), (40 * i,) * 3).save(frame_dir / fname)
        (data / "audio_wav" / sub.parent).mkdir(parents=True, exist_ok=True)
        write_wav(data / "audio_wav" / sub.parent / f"{name}.wav", tone, 16000)
        mask_dir = data / "gt_masks" / sub
        mask_dir.mkdir(parents=True)
        for i in range(1, (2 if (variant == "s4" and split == "train") else 6)):
            Image.fromarray(expected_mask(0, i) * 255, mode="L").save(mask_dir / f"{name}_{i}.png")
    return root


# The official metadata's quirks, added to the fixture above: the uid of a test_s row again with
# another object and expression (a separate sample), and a row of split TODO whose media do not exist
# (the official loader never reads that split).
REPEATED = ("-5-tOp4t_kU_0_10000", "-5-tOp4t_kU_0_10000_helicopter_1", "test_s", 1, "The object on the right.")
TODO_ROW = ("zzz", "nowhere_000_piano_1", "TODO", 0, "The piano.")


def write_official_quirks_fixture(root: Path) -> Path:
    """``write_refavs_fixture`` plus ``REPEATED`` (its masks written) and ``TODO_ROW`` (nothing written)."""
    write_refavs_fixture(root)
    with (root / "metadata.csv").open("a", newline="") as f:
        csv.writer(f, lineterminator="\n").writerows([REPEATED, TODO_ROW])
    folder = root / "gt_mask" / REPEATED[1].rsplit("_", 2)[0] / f"fid_{REPEATED[3]}"
    folder.mkdir(parents=True)
    for t in range(10):
        Image.fromarray(expected_mask(REPEATED[3], t) * 255, mode="L").save(folder / f"{t:05d}.png")
    return root
