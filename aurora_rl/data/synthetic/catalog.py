"""What a synthetic scene is made of: object classes, colours, positions.

Every class has a visual identity (a shape and a texture; colour is a separate, per-object
attribute) and its own sound signature (fundamental frequency, harmonics, rhythm). The eight
seen classes appear in train / val / test_s / test_n; the three unseen ones only in test_u.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ObjectClass:
    name: str
    shape: str
    texture: str  # solid | striped | dotted
    f0: float  # fundamental frequency in Hz
    rhythm: str  # steady | pulsing (3 Hz) | beeping (8 Hz)
    timbre: str  # pure (one partial) | buzzy (four harmonics)

    @property
    def pitch(self) -> str:
        return "low" if self.f0 < 300 else ("mid" if self.f0 < 1000 else "high")


SEEN_CLASSES = (
    ObjectClass("drum", "circle", "solid", 150.0, "pulsing", "buzzy"),
    ObjectClass("guitar", "triangle", "striped", 330.0, "steady", "buzzy"),
    ObjectClass("piano", "square", "solid", 523.0, "pulsing", "pure"),
    ObjectClass("violin", "diamond", "striped", 1100.0, "steady", "pure"),
    ObjectClass("dog", "cross", "solid", 260.0, "beeping", "buzzy"),
    ObjectClass("bird", "ring", "solid", 2000.0, "beeping", "pure"),
    ObjectClass("car", "bar", "dotted", 110.0, "steady", "buzzy"),
    ObjectClass("bell", "hexagon", "dotted", 1320.0, "pulsing", "pure"),
)
UNSEEN_CLASSES = (
    ObjectClass("siren", "star", "solid", 700.0, "beeping", "buzzy"),
    ObjectClass("clock", "pillar", "striped", 1700.0, "pulsing", "buzzy"),
    ObjectClass("phone", "tee", "dotted", 440.0, "steady", "pure"),
)
CLASSES = {c.name: c for c in SEEN_CLASSES + UNSEEN_CLASSES}

COLORS = {
    "red": (220, 50, 50),
    "green": (60, 190, 70),
    "blue": (70, 110, 240),
    "yellow": (235, 215, 60),
    "white": (235, 235, 235),
}

POSITIONS = ("left", "center", "right")  # the three columns of the frame, one object per column

RHYTHM_HZ = {"steady": 0.0, "pulsing": 3.0, "beeping": 8.0}
