"""The clip's audio: each sounding object's class signature from its onset to the end, mixed.

Signature of a class: a tone at its fundamental f0 (pure: one partial; buzzy: four harmonics
with amplitudes 1, 1/2, 1/3, 1/4), gated by its rhythm (steady; pulsing: 3 Hz on/off;
beeping: 8 Hz on/off). Frame t of the video covers the time span [t, t + 1) * seconds / T,
so an object with onset_frame k is heard from k * seconds / T on. A faint noise floor keeps
even a scene with no sounding object from being digitally silent.
"""

from __future__ import annotations

import numpy as np

from aurora_rl.data.synthetic.catalog import RHYTHM_HZ, ObjectClass
from aurora_rl.data.synthetic.scene import Scene

SOURCE_PEAK = 0.25
NOISE_RMS = 0.003
FADE_SECONDS = 0.005


def class_signature(cls: ObjectClass, t: np.ndarray) -> np.ndarray:
    """float64 [len(t)] signature of ``cls`` at times t (seconds), peak about SOURCE_PEAK."""
    partials = [1.0] if cls.timbre == "pure" else [1.0, 1 / 2, 1 / 3, 1 / 4]
    tone = sum(a * np.sin(2 * np.pi * (h + 1) * cls.f0 * t) for h, a in enumerate(partials))
    tone = tone / sum(partials)
    rate = RHYTHM_HZ[cls.rhythm]
    if rate > 0:
        gate = (np.sin(2 * np.pi * rate * t) > -0.2).astype(np.float64)
        kernel = np.hanning(int(FADE_SECONDS * 2 / (t[1] - t[0])) | 1)
        tone = tone * np.convolve(gate, kernel / kernel.sum(), mode="same")
    return SOURCE_PEAK * tone


def synthesize_audio(scene: Scene, seconds: float, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """float32 [round(seconds * sample_rate)] mixture in [-1, 1]."""
    n = int(round(seconds * sample_rate))
    t = np.arange(n) / sample_rate
    out = rng.normal(0.0, NOISE_RMS, size=n)
    fade = int(FADE_SECONDS * sample_rate)
    for o in scene.objects:
        if not o.sounds:
            continue
        start = int(round(o.onset_frame * seconds / scene.num_frames * sample_rate))
        sig = class_signature(o.cls, t[start:] - t[start])
        sig[:fade] *= np.linspace(0.0, 1.0, fade)
        out[start:] += sig
    return np.clip(out, -1.0, 1.0).astype(np.float32)
