"""Sampling a scene: which objects, where, how they move, which of them sound and from when.

Layout rule: the frame has three columns (left / center / right) and each object stays inside
its own column, so objects never overlap and every position word names at most one object.
Which objects sound, and when, is drawn independently of how they look, so nothing visual
tells a sounding object from a silent one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

from aurora_rl.data.synthetic.catalog import COLORS, POSITIONS, ObjectClass

MAX_ONSET_FRAME = 6  # onsets are frame-aligned and early enough to leave several sounding frames


@dataclass
class SceneObject:
    index: int
    cls: ObjectClass
    color: str
    column: int  # 0 left, 1 center, 2 right
    centers: list[tuple[float, float]]  # (x, y) in pixels, one per frame
    radius: float
    sounds: bool
    onset_frame: Optional[int]  # first frame whose time span has this object's sound

    @property
    def position(self) -> str:
        return POSITIONS[self.column]


@dataclass
class Scene:
    objects: list[SceneObject]
    size: int
    num_frames: int

    def sounding(self) -> list[SceneObject]:
        """Sounding objects in order of onset."""
        return sorted((o for o in self.objects if o.sounds), key=lambda o: o.onset_frame)


def sample_scene(
    rng: np.random.Generator,
    pool: Sequence[ObjectClass],
    *,
    size: int,
    num_frames: int,
    required: Optional[ObjectClass] = None,
    num_sounding: Optional[int] = None,
    required_sounds_first_prob: float = 0.0,
) -> Scene:
    """A scene of 2 or 3 objects of distinct classes and distinct colours.

    Args:
        pool: classes to draw from (``required`` is added on top when given).
        num_sounding: how many objects sound (None: 1, 2 or 3 at random; 0: a silent scene).
        required_sounds_first_prob: chance that ``required`` is made the first object to sound.
    """
    n = int(rng.choice([2, 3], p=[0.25, 0.75]))
    others = [c for c in pool if required is None or c.name != required.name]
    picked = [others[i] for i in rng.choice(len(others), n - (required is not None), replace=False)]
    classes = ([required] if required is not None else []) + picked
    order = rng.permutation(n)
    classes = [classes[i] for i in order]
    columns = sorted(int(c) for c in rng.choice(3, n, replace=False))
    colors = [str(c) for c in rng.choice(list(COLORS), n, replace=False)]

    if num_sounding is None:
        weights = np.array([0.5, 0.35, 0.15][:n])
        num_sounding = int(rng.choice(np.arange(1, n + 1), p=weights / weights.sum()))
    sounders = set(int(i) for i in rng.choice(n, num_sounding, replace=False))
    onsets = sorted(int(o) for o in rng.choice(MAX_ONSET_FRAME + 1, num_sounding, replace=False))
    onset_of = dict(zip(rng.permutation(sorted(sounders)).tolist(), onsets))
    if required is not None and num_sounding > 0 and rng.random() < required_sounds_first_prob:
        req = next(i for i, c in enumerate(classes) if c.name == required.name)
        first = min(onset_of, key=onset_of.get)
        if req not in onset_of:
            onset_of[req] = onset_of.pop(first)
        else:
            onset_of[req], onset_of[first] = onset_of[first], onset_of[req]

    unit = size / 64.0
    objects = []
    for i in range(n):
        cx = (2 * columns[i] + 1) / 6.0 * size
        x0 = cx + rng.uniform(-1.0, 1.0) * unit
        y0 = rng.uniform(0.3, 0.7) * size
        vx, vy = rng.uniform(-0.2, 0.2) * unit, rng.uniform(-0.8, 0.8) * unit
        objects.append(
            SceneObject(
                index=i,
                cls=classes[i],
                color=colors[i],
                column=columns[i],
                centers=[(x0 + vx * t, y0 + vy * t) for t in range(num_frames)],
                radius=rng.uniform(0.1, 0.12) * size,
                sounds=i in onset_of,
                onset_frame=onset_of.get(i),
            )
        )
    return Scene(objects, size, num_frames)
