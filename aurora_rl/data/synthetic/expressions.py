"""Referring expressions of a scene, by the cue they need.

- audio: only the soundtrack tells which object is meant ("the first object to make a sound .").
- visual: class, colour or position ("the red object on the left .").
- audio_visual: a spatial relation to an object found by sound ("the object to the left of the
  object making the sound ."); only used with three objects, where position alone leaves two
  candidates.
- null: the referent is absent (a class or colour not in the scene, a colour-class pair that does
  not exist, or "the object making the sound ." when nothing sounds); its masks are empty.

Which object sounds is independent of looks (scene.py), so a model that ignores audio is left
guessing on audio expressions: 1 in 2 or 3 for audio, 1 in 2 for audio_visual.
Text is lowercase, words separated by single spaces, the final "." a token of its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

from aurora_rl.data.synthetic.catalog import CLASSES, COLORS, POSITIONS, RHYTHM_HZ, ObjectClass
from aurora_rl.data.synthetic.scene import Scene

AUDIO_TEMPLATES = {
    "sound": "the object making the sound .",
    "first_sound": "the first object to make a sound .",
    "last_sound": "the last object to make a sound .",
    "silent": "the silent object .",
}
VISUAL_TEMPLATES = {
    "class": "the {cls} .",
    "color": "the {color} object .",
    "position": "the object {where} .",
    "color_position": "the {color} object {where} .",
    "color_class": "the {color} {cls} .",
}
AUDIO_VISUAL_TEMPLATES = {
    "left_of_sound": "the object to the left of the object making the sound .",
    "right_of_sound": "the object to the right of the object making the sound .",
    "left_of_first": "the object to the left of the first object to make a sound .",
    "right_of_first": "the object to the right of the first object to make a sound .",
}
NULL_TEMPLATES = {
    "absent_class": "the {cls} .",
    "absent_color": "the {color} object .",
    "absent_pair": "the {color} {cls} .",
    "no_sound": "the object making the sound .",
}


WHERE = {"left": "on the left", "center": "in the center", "right": "on the right"}


@dataclass(frozen=True)
class Expression:
    text: str
    kind: str  # audio | visual | audio_visual | null
    template: str
    target: Optional[int]  # object index; None for null
    referred_class: Optional[str] = None  # the class named by a null expression, if any
    referred_color: Optional[str] = None


def _neighbour(scene: Scene, anchor: int, side: str) -> Optional[int]:
    col = scene.objects[anchor].column
    cands = [o for o in scene.objects if (o.column < col if side == "left" else o.column > col)]
    if not cands:
        return None
    return (max if side == "left" else min)(cands, key=lambda o: o.column).index


def audio_expressions(scene: Scene) -> list[Expression]:
    out = []
    sounding = scene.sounding()
    silent = [o for o in scene.objects if not o.sounds]
    if len(sounding) == 1:
        out.append(Expression(AUDIO_TEMPLATES["sound"], "audio", "sound", sounding[0].index))
    if len(sounding) >= 2:
        out.append(Expression(AUDIO_TEMPLATES["first_sound"], "audio", "first_sound", sounding[0].index))
        out.append(Expression(AUDIO_TEMPLATES["last_sound"], "audio", "last_sound", sounding[-1].index))
    if len(silent) == 1 and sounding:
        out.append(Expression(AUDIO_TEMPLATES["silent"], "audio", "silent", silent[0].index))
    return out


def visual_expressions(scene: Scene) -> list[Expression]:
    out = []
    for o in scene.objects:
        values = {"cls": o.cls.name, "color": o.color, "where": WHERE[o.position]}
        for name, template in VISUAL_TEMPLATES.items():
            out.append(Expression(template.format(**values), "visual", name, o.index))
    return out


def audio_visual_expressions(scene: Scene) -> list[Expression]:
    if len(scene.objects) < 3:
        return []
    sounding = scene.sounding()
    anchors = []
    if len(sounding) == 1:
        anchors.append(("sound", sounding[0].index))
    if len(sounding) >= 2:
        anchors.append(("first", sounding[0].index))
    out = []
    for anchor_name, anchor in anchors:
        for side in ("left", "right"):
            target = _neighbour(scene, anchor, side)
            if target is not None:
                name = f"{side}_of_{anchor_name}"
                out.append(Expression(AUDIO_VISUAL_TEMPLATES[name], "audio_visual", name, target))
    return out


def null_expressions(scene: Scene, pool: Sequence[ObjectClass]) -> list[Expression]:
    """Expressions whose referent is absent; class names are drawn from ``pool``."""
    present_classes = {o.cls.name for o in scene.objects}
    present_colors = {o.color for o in scene.objects}
    out = []
    for c in pool:
        if c.name not in present_classes:
            out.append(Expression(NULL_TEMPLATES["absent_class"].format(cls=c.name), "null", "absent_class", None, c.name))
    for color in COLORS:
        if color not in present_colors:
            text = NULL_TEMPLATES["absent_color"].format(color=color)
            out.append(Expression(text, "null", "absent_color", None, None, color))
    for o in scene.objects:
        for other in scene.objects:
            if other.index != o.index:
                text = NULL_TEMPLATES["absent_pair"].format(color=other.color, cls=o.cls.name)
                out.append(Expression(text, "null", "absent_pair", None, o.cls.name, other.color))
    if not scene.sounding():
        out.append(Expression(NULL_TEMPLATES["no_sound"], "null", "no_sound", None))
    return out


def synthetic_words() -> list[str]:
    """Every word of every expression and every descriptive value in the scene facts, sorted.

    Covers template words, class names, colours, positions, shapes, textures, pitch, rhythm and
    timbre words, the digits 0-9 (frame numbers) and the "." token.
    """
    words = set("0 1 2 3 4 5 6 7 8 9 .".split())
    for group in (AUDIO_TEMPLATES, VISUAL_TEMPLATES, AUDIO_VISUAL_TEMPLATES, NULL_TEMPLATES):
        for template in group.values():
            words.update(w for w in template.split() if not w.startswith("{"))
    for c in CLASSES.values():
        words.update([c.name, c.shape, c.texture, c.pitch, c.rhythm, c.timbre])
    words.update(COLORS)
    words.update(POSITIONS)
    words.update(w for phrase in WHERE.values() for w in phrase.split())
    words.update(RHYTHM_HZ)
    words.update(["low", "mid", "high"])
    return sorted(words)
