"""Writing a synthetic benchmark in exactly the Ref-AVS Bench layout, deterministically.

Video i draws everything from ``np.random.default_rng([seed, i])``, so a video does not depend
on how many others are generated, and the same seed writes the same bytes.
"""

from __future__ import annotations

import csv
import io
import json
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
from PIL import Image

from aurora_rl.data import refavs_layout as layout
from aurora_rl.data.audio_features import write_wav
from aurora_rl.data.scene_facts import FACTS_FILE, write_scene_facts
from aurora_rl.data.synthetic.audio_synth import synthesize_audio
from aurora_rl.data.synthetic.catalog import SEEN_CLASSES, UNSEEN_CLASSES
from aurora_rl.data.synthetic.expressions import (
    Expression,
    audio_expressions,
    audio_visual_expressions,
    null_expressions,
    visual_expressions,
)
from aurora_rl.data.synthetic.render import render_scene
from aurora_rl.data.synthetic.scene import Scene, sample_scene

CONFIG_FILE = "synthetic_config.json"
KIND_WEIGHTS = {"audio": 0.35, "visual": 0.25, "audio_visual": 0.4}


@dataclass
class SynthConfig:
    """Generator settings (written to ROOT/synthetic_config.json beside the data)."""

    frame_size: int = 64
    num_frames: int = layout.NUM_FRAMES
    audio_seconds: float = 2.0
    sample_rate: int = 16000
    expressions_per_video: int = 3
    split_fractions: dict = field(
        default_factory=lambda: {"train": 0.7, "val": 0.075, "test_s": 0.075, "test_u": 0.075, "test_n": 0.075}
    )
    train_null_fraction: float = 0.1  # train videos that also get one null row
    silent_fraction: float = 0.05  # train scenes where nothing sounds (teaches the "no_sound" null)
    test_n_silent_fraction: float = 0.3
    # Share of the videos outside test_u that also hold one object of an unseen class, which no
    # expression refers to (the chain of thought's step 1 still names it): a stand-in for what a
    # pretrained model knows of classes the referring training never asks about.
    unseen_distractor_fraction: float = 0.0
    jpeg_quality: int = 95


def split_counts(videos: int, fractions: dict) -> dict[str, int]:
    """Videos per split: rounded shares, every split at least one when videos >= 5, rest to train."""
    counts = {s: int(round(videos * fractions[s])) for s in layout.SPLITS if s != "train"}
    if videos >= len(layout.SPLITS):
        counts = {s: max(1, n) for s, n in counts.items()}
    counts["train"] = videos - sum(counts.values())
    if counts["train"] < 0:
        raise ValueError(f"{videos} videos are too few for the split fractions {fractions}")
    return {s: counts[s] for s in layout.SPLITS}


def _choose(rng: np.random.Generator, items: list):
    return items[int(rng.integers(len(items)))]


def _choose_null(rng, nulls: list[Expression], taken: list[Expression]) -> Expression:
    """A null expression not yet taken: first a reason (template), then one of its instances."""
    left = [e for e in nulls if e not in taken]
    template = _choose(rng, sorted({e.template for e in left}))
    return _choose(rng, [e for e in left if e.template == template])


def _pick_expressions(rng, scene: Scene, split: str, cfg: SynthConfig, target: Optional[int],
                      exclude: Optional[int] = None) -> list[Expression]:
    """The rows of one video. ``target`` restricts non-null rows to one object (test_u);
    ``exclude`` keeps them off one (an unseen-class distractor)."""
    silent_scene = not scene.sounding()
    if split == "test_n":
        nulls = null_expressions(scene, SEEN_CLASSES)
        rows = [next(e for e in nulls if e.template == "no_sound")] if silent_scene else []
        while len(rows) < 1 + int(rng.random() < 0.5):
            rows.append(_choose_null(rng, nulls, rows))
        return rows
    # One side per video, drawn before looking at the scene: choosing among the relations that
    # happen to exist would make "left of" point at the middle object more often than not.
    side = "left" if rng.random() < 0.5 else "right"
    by_kind = {
        "audio": audio_expressions(scene),
        "visual": visual_expressions(scene),
        "audio_visual": [e for e in audio_visual_expressions(scene) if e.template.startswith(side)],
    }
    if target is not None:
        by_kind = {k: [e for e in v if e.target == target] for k, v in by_kind.items()}
    if exclude is not None:
        by_kind = {k: [e for e in v if e.target != exclude] for k, v in by_kind.items()}
    rows: list[Expression] = []
    want_null = split == "train" and (silent_scene or rng.random() < cfg.train_null_fraction)
    n_rows = cfg.expressions_per_video - int(want_null)
    while len(rows) < n_rows:
        kinds = [k for k in KIND_WEIGHTS if any(e not in rows for e in by_kind[k])]
        if not kinds:
            break
        w = np.array([KIND_WEIGHTS[k] for k in kinds])
        kind = kinds[int(rng.choice(len(kinds), p=w / w.sum()))]
        left = [e for e in by_kind[kind] if e not in rows]
        template = _choose(rng, sorted({e.template for e in left}))
        rows.append(_choose(rng, [e for e in left if e.template == template]))
    if want_null:
        nulls = null_expressions(scene, SEEN_CLASSES)
        rows.append(next(e for e in nulls if e.template == "no_sound") if silent_scene else _choose_null(rng, nulls, rows))
    return rows


def object_facts(scene: Scene) -> list[dict]:
    return [
        {
            "index": o.index,
            "class": o.cls.name,
            "color": o.color,
            "position": o.position,
            "shape": o.cls.shape,
            "texture": o.cls.texture,
            "pitch": o.cls.pitch,
            "rhythm": o.cls.rhythm,
            "timbre": o.cls.timbre,
            "sounds": o.sounds,
            "onset_frame": o.onset_frame,
            "centers": [[round(x, 1), round(y, 1)] for x, y in o.centers],
        }
        for o in scene.objects
    ]


def _png_bytes(mask: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(mask.astype(np.uint8) * 255, mode="L").save(buf, format="PNG")
    return buf.getvalue()


def _write_video(root: Path, vid: str, split: str, index: int, seed: int, cfg: SynthConfig):
    """Render, write media and masks of one video; return its (csv rows, facts records)."""
    rng = np.random.default_rng([seed, index])
    required = _choose(rng, list(UNSEEN_CLASSES)) if split == "test_u" else None
    distractor = None  # drawn only when asked for: without it a seed writes the same bytes as before
    if required is None and cfg.unseen_distractor_fraction > 0 and rng.random() < cfg.unseen_distractor_fraction:
        distractor = _choose(rng, list(UNSEEN_CLASSES))
    silent_p = {"train": cfg.silent_fraction, "test_n": cfg.test_n_silent_fraction}.get(split, 0.0)
    scene = sample_scene(
        rng,
        SEEN_CLASSES,
        size=cfg.frame_size,
        num_frames=cfg.num_frames,
        required=required or distractor,
        num_sounding=0 if rng.random() < silent_p else None,
        required_sounds_first_prob=0.6 if required else 0.0,
    )

    def index_of(cls) -> Optional[int]:
        return None if cls is None else next(o.index for o in scene.objects if o.cls.name == cls.name)

    expressions = _pick_expressions(rng, scene, split, cfg, index_of(required), exclude=index_of(distractor))
    frames, masks = render_scene(scene, rng)
    audio = synthesize_audio(scene, cfg.audio_seconds, cfg.sample_rate, rng)

    (root / "media" / vid / "frames").mkdir(parents=True)
    for t in range(cfg.num_frames):
        Image.fromarray(frames[t]).save(layout.frame_path(root, vid, t), quality=cfg.jpeg_quality)
    write_wav(layout.audio_path(root, vid), audio, cfg.sample_rate)

    null_fid = len(scene.objects)
    fids = sorted({null_fid if e.target is None else e.target for e in expressions})
    empty = _png_bytes(np.zeros((cfg.frame_size, cfg.frame_size), dtype=bool))
    for fid in fids:
        layout.mask_dir(root, vid, fid).mkdir(parents=True)
        for t in range(cfg.num_frames):
            data = empty if fid == null_fid else _png_bytes(masks[fid, t])
            layout.mask_path(root, vid, fid, t).write_bytes(data)

    rows, facts, per_token = [], [], {}
    objects = object_facts(scene)
    for e in expressions:
        token = scene.objects[e.target].cls.name if e.target is not None else (e.referred_class or "null")
        per_token[token] = per_token.get(token, 0) + 1
        uid = f"{vid}_{token}_{per_token[token]}"
        fid = null_fid if e.target is None else e.target
        rows.append((vid, uid, split, fid, e.text))
        facts.append(
            {
                "uid": uid,
                "vid": vid,
                "split": split,
                "fid": fid,
                "expression": e.text,
                "expression_kind": e.kind,
                "template": e.template,
                "target_class": None if e.target is None else scene.objects[e.target].cls.name,
                "target_index": e.target,
                "null_reason": e.template if e.kind == "null" else None,
                "referred_class": e.referred_class,
                "referred_color": e.referred_color,
                "objects": objects,
                "num_frames": cfg.num_frames,
                "frame_size": cfg.frame_size,
                "audio_seconds": cfg.audio_seconds,
                "sample_rate": cfg.sample_rate,
            }
        )
    return rows, facts


def generate_benchmark(
    out: str | Path, videos: int, seed: int, cfg: Optional[SynthConfig] = None, overwrite: bool = False
) -> dict:
    """Write ``videos`` synthetic clips under ``out`` in the Ref-AVS layout.

    Writes metadata.csv, media/, gt_mask/, scene_facts.jsonl and synthetic_config.json. Refuses
    to write over an existing dataset unless ``overwrite`` (which removes only those entries).
    Returns {"videos", "rows", "splits": {split: videos}}.
    """
    cfg = cfg or SynthConfig()
    if videos < 1:
        raise ValueError(f"videos must be >= 1, got {videos}")
    root = Path(out)
    ours = ["metadata.csv", FACTS_FILE, CONFIG_FILE, "media", "gt_mask"]
    existing = [name for name in ours if (root / name).exists()]
    if existing and not overwrite:
        raise FileExistsError(f"{root} already holds a dataset ({', '.join(existing)}); pass overwrite to replace it")
    for name in existing:
        path = root / name
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    root.mkdir(parents=True, exist_ok=True)

    counts = split_counts(videos, cfg.split_fractions)
    all_rows, all_facts, index = [], [], 0
    for split in layout.SPLITS:
        for _ in range(counts[split]):
            vid = f"synth_s{seed}_v{index:05d}"
            rows, facts = _write_video(root, vid, split, index, seed, cfg)
            all_rows += rows
            all_facts += facts
            index += 1
    with layout.metadata_path(root).open("w", encoding="utf-8", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(layout.COLUMNS)
        w.writerows(all_rows)
    write_scene_facts(root, all_facts)
    config = {"seed": seed, "videos": videos, **asdict(cfg)}
    (root / CONFIG_FILE).write_text(json.dumps(config, sort_keys=True, indent=1) + "\n")
    return {"videos": videos, "rows": len(all_rows), "splits": counts}
