"""Chain-of-thought per uid, behind one interface, from three sources.

- ``scene``: written from the synthetic benchmark's scene facts (``scene_cot.py``);
- ``jsonl``: an existing file, one object per line: ``{"uid": ..., "cot": "<full answer>"}``
  or the steps apart ``{"uid", "images", "audio", "reference", "target"}`` (``target``
  null for a null reference);
- ``teacher``: a served model writes that JSONL first (``aurora-rl cot generate``), then it is
  read as ``jsonl``.

Every entry is checked before training sees it: a malformed answer (missing steps, no target,
no ``[SEG]``) or one longer than ``max_tokens`` is rejected, counted and its reason kept.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

from aurora_rl.prompts.answer_format import CoTEntry, compose_answer, parse_answer
from aurora_rl.prompts.scene_cot import scene_cot


@dataclass
class CoTReport:
    accepted: int = 0
    rejected: Counter = field(default_factory=Counter)  # reason -> count
    examples: dict = field(default_factory=dict)  # reason -> first uid with it

    def reject(self, uid: str, reason: str) -> None:
        self.rejected[reason] += 1
        self.examples.setdefault(reason, uid)

    def summary(self) -> str:
        total = self.accepted + sum(self.rejected.values())
        lines = [f"CoT: {self.accepted}/{total} accepted"]
        lines += [f"  rejected {n}: {reason} (e.g. uid {self.examples[reason]})" for reason, n in self.rejected.most_common()]
        return "\n".join(lines)


def check_entry(entry: CoTEntry, max_tokens: int, count_tokens: Callable[[str], int], report: CoTReport) -> bool:
    parsed = parse_answer(entry.answer)
    if parsed.problems:
        report.reject(entry.uid, "malformed: " + "; ".join(parsed.problems))
        return False
    n = count_tokens(entry.answer)
    if n > max_tokens:
        report.reject(entry.uid, f"longer than max_tokens={max_tokens}")
        return False
    report.accepted += 1
    return True


def read_cot_jsonl(path: str | Path, report: CoTReport) -> dict[str, CoTEntry]:
    """Entries of a CoT JSONL; lines that cannot be read are rejected with their line number."""
    out: dict[str, CoTEntry] = {}
    path = Path(path)
    with path.open() as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                report.reject(where, f"not JSON ({e.msg})")
                continue
            if not isinstance(obj, dict) or not isinstance(obj.get("uid"), str):
                report.reject(where, "no string 'uid'")
                continue
            if isinstance(obj.get("cot"), str):
                answer = obj["cot"]
                target = parse_answer(answer).target_class
            elif all(isinstance(obj.get(k), str) for k in ("images", "audio", "reference")):
                target = obj.get("target")
                answer = compose_answer(obj["images"], obj["audio"], obj["reference"], target)
            else:
                report.reject(where, "needs 'cot' or 'images'/'audio'/'reference'/'target'")
                continue
            out[obj["uid"]] = CoTEntry(obj["uid"], answer, target if target != "nothing" else None)
    return out


def write_cot_jsonl(entries: Iterable[CoTEntry], path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as f:
        for e in entries:
            f.write(json.dumps({"uid": e.uid, "cot": e.answer}) + "\n")
    return path


def load_cot(source: str, uids: Iterable[str], *, facts: dict | None = None, path: str | None = None,
             max_tokens: int = 150, count_tokens: Callable[[str], int] = lambda s: len(s.split())
             ) -> tuple[dict[str, CoTEntry], CoTReport]:
    """CoT for ``uids`` from ``source`` ("scene" or "jsonl"), validated; missing uids are rejected too."""
    report = CoTReport()
    if source == "scene":
        if facts is None:
            raise ValueError("the scene CoT source needs the dataset's scene facts (scene_facts.jsonl)")
        available = {uid: scene_cot(facts[uid]) for uid in uids if uid in facts}
    elif source in ("jsonl", "teacher"):
        if not path:
            raise ValueError(f"CoT source {source!r} needs a path")
        available = read_cot_jsonl(path, report)
    else:
        raise ValueError(f"unknown CoT source {source!r} (scene, jsonl, teacher)")
    out = {}
    for uid in uids:
        entry = available.get(uid)
        if entry is None:
            report.reject(uid, "no CoT for this uid")
        elif check_entry(entry, max_tokens, count_tokens, report):
            out[uid] = entry
    return out, report
