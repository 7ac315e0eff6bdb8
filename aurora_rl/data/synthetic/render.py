"""Drawing a scene: RGB frames and one exact binary mask per object and frame.

Each class has its own shape and texture (stripes or dots darken part of the object); colour is
per object. Shapes are drawn without antialiasing, so the mask is exactly the painted pixels.
Sounding objects are drawn exactly like silent ones.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw

from aurora_rl.data.synthetic.catalog import COLORS
from aurora_rl.data.synthetic.scene import Scene

BACKGROUND = np.array([38, 40, 48], dtype=np.float32)


def _polygon(n: int, cx: float, cy: float, r: float, start_deg: float) -> list[tuple[float, float]]:
    angles = [math.radians(start_deg + 360.0 * k / n) for k in range(n)]
    return [(cx + r * math.cos(a), cy + r * math.sin(a)) for a in angles]


def shape_mask(shape: str, cx: float, cy: float, r: float, size: int) -> np.ndarray:
    """bool [size, size]: the pixels of ``shape`` centred at (cx, cy), fitting in a circle of radius r."""
    img = Image.new("L", (size, size), 0)
    d = ImageDraw.Draw(img)
    if shape == "circle":
        d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=1)
    elif shape == "ring":
        d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=1)
        h = r * 0.5
        d.ellipse([cx - h, cy - h, cx + h, cy + h], fill=0)
    elif shape == "square":
        h = r * 0.75
        d.rectangle([cx - h, cy - h, cx + h, cy + h], fill=1)
    elif shape == "triangle":
        d.polygon(_polygon(3, cx, cy + r * 0.15, r, -90.0), fill=1)
    elif shape == "diamond":
        d.polygon(_polygon(4, cx, cy, r, -90.0), fill=1)
    elif shape == "hexagon":
        d.polygon(_polygon(6, cx, cy, r, 0.0), fill=1)
    elif shape == "cross":
        w = r * 0.35
        d.rectangle([cx - r, cy - w, cx + r, cy + w], fill=1)
        d.rectangle([cx - w, cy - r, cx + w, cy + r], fill=1)
    elif shape == "bar":
        d.rectangle([cx - r, cy - r * 0.4, cx + r, cy + r * 0.4], fill=1)
    elif shape == "pillar":
        d.rectangle([cx - r * 0.4, cy - r, cx + r * 0.4, cy + r], fill=1)
    elif shape == "tee":
        d.rectangle([cx - r, cy - r, cx + r, cy - r * 0.3], fill=1)
        d.rectangle([cx - r * 0.35, cy - r, cx + r * 0.35, cy + r], fill=1)
    elif shape == "star":
        pts = []
        for k in range(10):
            rad = r if k % 2 == 0 else r * 0.45
            a = math.radians(-90.0 + 36.0 * k)
            pts.append((cx + rad * math.cos(a), cy + rad * math.sin(a)))
        d.polygon(pts, fill=1)
    else:
        raise ValueError(f"unknown shape {shape!r}")
    return np.asarray(img, dtype=bool)


def _texture(texture: str, size: int) -> np.ndarray:
    """float32 [size, size] brightness factor of a texture (1 = untouched)."""
    y, x = np.mgrid[0:size, 0:size]
    if texture == "solid":
        return np.ones((size, size), dtype=np.float32)
    if texture == "striped":
        return np.where(((x + y) // 3) % 2 == 0, 1.0, 0.45).astype(np.float32)
    if texture == "dotted":
        return np.where((x % 4 < 2) & (y % 4 < 2), 0.4, 1.0).astype(np.float32)
    raise ValueError(f"unknown texture {texture!r}")


def render_scene(scene: Scene, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Returns frames uint8 [T, H, W, 3] and masks bool [num_objects, T, H, W]."""
    size, t_count = scene.size, scene.num_frames
    tint = rng.uniform(-8.0, 8.0, size=3).astype(np.float32)
    background = np.broadcast_to(BACKGROUND + tint, (size, size, 3))
    frames = np.empty((t_count, size, size, 3), dtype=np.uint8)
    masks = np.zeros((len(scene.objects), t_count, size, size), dtype=bool)
    textures = {o.cls.texture: _texture(o.cls.texture, size) for o in scene.objects}
    for t in range(t_count):
        img = background + rng.normal(0.0, 4.0, size=(size, size, 1)).astype(np.float32)
        for o in scene.objects:
            cx, cy = o.centers[t]
            m = shape_mask(o.cls.shape, cx, cy, o.radius, size)
            masks[o.index, t] = m
            color = np.array(COLORS[o.color], dtype=np.float32)
            img[m] = color * textures[o.cls.texture][m][:, None]
        frames[t] = np.clip(np.round(img), 0, 255).astype(np.uint8)
    return frames, masks
