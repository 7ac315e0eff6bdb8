"""Scene facts of a synthetic benchmark: ``ROOT/scene_facts.jsonl``, one JSON object per uid.

They are the ground truth that chain-of-thought text is written from. Each object has at least:

```
uid, vid, split, fid, expression,
expression_kind   "audio" | "visual" | "audio_visual" | "null"
template          which expression template produced it (e.g. "first_sound")
target_class      class name of the referent, null for null rows
target_index      index into objects, null for null rows
null_reason       for null rows: "absent_class" | "absent_color" | "absent_pair" | "no_sound"
objects           [{index, class, color, position ("left"|"center"|"right"), shape, texture,
                    pitch, rhythm, sounds (bool), onset_frame (int or null), centers [[x, y] per frame]}]
num_frames, frame_size, audio_seconds, sample_rate
```
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable

from aurora_rl.data.errors import DataError

FACTS_FILE = "scene_facts.jsonl"
REQUIRED_KEYS = ("uid", "split", "expression", "expression_kind", "target_class", "objects")
EXPRESSION_KINDS = ("audio", "visual", "audio_visual", "null")


def facts_path(root: str | Path) -> Path:
    return Path(root) / FACTS_FILE


def load_scene_facts(root: str | Path) -> dict[str, dict[str, Any]]:
    """Read ROOT/scene_facts.jsonl -> {uid: facts}. Empty dict when the file does not exist.

    Raises DataError naming the file and line for invalid JSON, missing keys or a repeated uid.
    """
    path = facts_path(root)
    if not path.exists():
        return {}
    facts: dict[str, dict[str, Any]] = {}
    with path.open(encoding="utf-8") as f:
        for line_no, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(path, f"line {line_no}: not valid JSON ({e.msg})") from None
            if not isinstance(obj, dict):
                raise DataError(path, f"line {line_no}: expected a JSON object")
            missing = [k for k in REQUIRED_KEYS if k not in obj]
            if missing:
                raise DataError(path, f"line {line_no}: missing keys {', '.join(missing)}")
            if obj["expression_kind"] not in EXPRESSION_KINDS:
                raise DataError(path, f"line {line_no}: unknown expression_kind {obj['expression_kind']!r}")
            if obj["uid"] in facts:
                raise DataError(path, f"line {line_no}: uid {obj['uid']!r} appears twice")
            facts[obj["uid"]] = obj
    return facts


def write_scene_facts(root: str | Path, records: Iterable[dict[str, Any]]) -> Path:
    """Write one compact JSON object per line, keys sorted (byte-identical for identical input)."""
    path = facts_path(root)
    with path.open("w", encoding="utf-8", newline="\n") as f:
        for rec in records:
            f.write(json.dumps(rec, sort_keys=True, separators=(",", ":")) + "\n")
    return path
