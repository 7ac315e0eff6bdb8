"""Chain-of-thought per sample (a metadata row), behind one interface, from three sources.

- ``scene``: written from the synthetic benchmark's scene facts (``scene_cot.py``);
- ``jsonl``: an existing file, one object per line: ``{"uid": ..., "cot": "<full answer>"}``
  or the steps apart ``{"uid", "images", "audio", "reference", "target"}`` (``target``
  null for a null reference). A uid can occur on more than one row of the official metadata
  (another expression, another object): a line may name its row (``"row": <metadata line>``),
  and must when its uid is asked on more than one row;
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
    examples: dict = field(default_factory=dict)  # reason -> the first sample (uid@row) or line with it

    def reject(self, uid: str, reason: str) -> None:
        self.rejected[reason] += 1
        self.examples.setdefault(reason, uid)

    def summary(self) -> str:
        total = self.accepted + sum(self.rejected.values())
        lines = [f"CoT: {self.accepted}/{total} accepted"]
        lines += [f"  rejected {n}: {reason} (e.g. {self.examples[reason]})" for reason, n in self.rejected.most_common()]
        return "\n".join(lines)


def entry_problem(entry: CoTEntry, max_tokens: int, count_tokens: Callable[[str], int]) -> str | None:
    """Why a CoT entry cannot be trained on (malformed, too long), or None."""
    parsed = parse_answer(entry.answer)
    if parsed.problems:
        return "malformed: " + "; ".join(parsed.problems)
    if count_tokens(entry.answer) > max_tokens:
        return f"longer than max_tokens={max_tokens}"
    return None


def check_entry(entry: CoTEntry, max_tokens: int, count_tokens: Callable[[str], int], report: CoTReport) -> bool:
    problem = entry_problem(entry, max_tokens, count_tokens)
    if problem:
        report.reject(entry.uid if entry.row is None else f"{entry.uid}@{entry.row}", problem)
        return False
    report.accepted += 1
    return True


def read_cot_jsonl(path: str | Path, report: CoTReport) -> list[CoTEntry]:
    """Entries of a CoT JSONL; lines that cannot be read are rejected with their line number."""
    out: list[CoTEntry] = []
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
            row = obj.get("row")
            if row is not None and (not isinstance(row, int) or isinstance(row, bool)):
                report.reject(where, "'row' is not a metadata line number")
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
            out.append(CoTEntry(obj["uid"], answer, target if target != "nothing" else None, row))
    return out


def write_cot_jsonl(entries: Iterable[CoTEntry], path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as f:
        for e in entries:
            f.write(json.dumps({"uid": e.uid, **({} if e.row is None else {"row": e.row}), "cot": e.answer}) + "\n")
    return path


def load_cot(source: str, samples: Iterable[tuple[str, int]], *, facts: dict | None = None, path: str | None = None,
             max_tokens: int = 150, count_tokens: Callable[[str], int] = lambda s: len(s.split())
             ) -> tuple[dict[int, CoTEntry], CoTReport]:
    """CoT for ``samples`` ((uid, metadata row) pairs) from ``source`` ("scene" or "jsonl"),
    validated, keyed by row; samples without one are rejected too."""
    samples = list(samples)
    report = CoTReport()
    if source == "scene":
        if facts is None:
            raise ValueError("the scene CoT source needs the dataset's scene facts (scene_facts.jsonl)")
        entries = [scene_cot(facts[uid], row) for uid, row in samples if uid in facts]
    elif source in ("jsonl", "teacher"):
        if not path:
            raise ValueError(f"CoT source {source!r} needs a path")
        entries = read_cot_jsonl(path, report)
    else:
        raise ValueError(f"unknown CoT source {source!r} (scene, jsonl, teacher)")
    by_row = {e.row: e for e in entries if e.row is not None}
    by_uid = {e.uid: e for e in entries if e.row is None}
    rows_of_uid = Counter(uid for uid, _ in samples)
    out = {}
    for uid, row in samples:
        entry = by_row.get(row)
        if entry is not None and entry.uid != uid:
            report.reject(f"{uid}@{row}", "the CoT names this row with another uid")
        elif entry is None and uid in by_uid and rows_of_uid[uid] > 1:
            report.reject(f"{uid}@{row}", "uid on more than one row: its CoT must name the row")
        elif entry is None and uid not in by_uid:
            report.reject(f"{uid}@{row}", "no CoT for this sample")
        else:
            entry = entry or CoTEntry(uid, by_uid[uid].answer, by_uid[uid].target_class, row)
            if check_entry(entry, max_tokens, count_tokens, report):
                out[row] = entry
    return out, report
