"""The automatic verdict: did each stage raise held-out J over the stage before it, beyond what
the draw of test clips alone would move it, and if not, why.

Every sentence is computed from the two stages' evaluation folders: J, class accuracy and
format rate from results.json; failure kinds, per-sample changes and IoU from samples.jsonl.

A change of J counts only when it is larger than the noise of the test clips: its 95 % interval
comes from a paired bootstrap over the clips both stages were scored on (per-clip IoU; Mix
resamples test_s and test_u separately), placed around the change of J. With a few hundred clips
per split the interval is a few points of J wide, so small changes read as "within the noise".
Without per-clip scores only the sign of the change is judged, and the verdict says so.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from aurora_rl.metrics.paired_bootstrap import bootstrap_mean_change, paired_differences
from aurora_rl.report.eval_outputs import StageEval, number

HELD_OUT = ("test_s", "test_u", "mix")
MIX_PARTS = ("test_s", "test_u")
# A change the 4-decimal table cannot show is no change.
DECIMALS = 4
IMPROVED, WORSE, NOISE, UNCHANGED, UNKNOWN = "improved", "worse", "within the noise", "unchanged", "unknown"


@dataclass
class SplitChange:
    split: str
    before: float
    after: float
    low: float = math.nan  # 95 % interval of the change over draws of test clips; NaN: no per-clip scores
    high: float = math.nan
    clips: int = 0

    @property
    def delta(self) -> float:
        return self.after - self.before

    @property
    def judged_by_sign(self) -> bool:
        return math.isnan(self.low)

    @property
    def outcome(self) -> str:
        if math.isnan(self.before) or math.isnan(self.after):
            return UNKNOWN
        step = round(self.delta, DECIMALS)
        if step == 0:
            return UNCHANGED
        if self.judged_by_sign:
            return IMPROVED if step > 0 else WORSE
        # judged as printed: an interval whose end rounds to 0 holds 0
        if step > 0 and round(self.low, DECIMALS) > 0:
            return IMPROVED
        if step < 0 and round(self.high, DECIMALS) < 0:
            return WORSE
        return NOISE

    @property
    def improved(self) -> Optional[bool]:
        """None: J missing in one of the two stages."""
        return None if self.outcome == UNKNOWN else self.outcome == IMPROVED


@dataclass
class StageVerdict:
    stage: str
    previous: str
    changes: list[SplitChange]
    reasons: dict[str, list[str]] = field(default_factory=dict)  # split -> sentences, for splits that did not improve
    notes: list[str] = field(default_factory=list)  # what else moved (the null split)

    @property
    def improved(self) -> bool:
        return all(c.improved for c in self.changes)

    @property
    def label(self) -> str:
        """improved | partly improved | mixed | got worse | no clear change."""
        outcomes = {c.outcome for c in self.changes}
        if self.improved:
            return "improved"
        if IMPROVED in outcomes:
            return "mixed" if WORSE in outcomes else "partly improved"
        return "got worse" if WORSE in outcomes else "no clear change"

    def headline(self) -> str:
        groups = [(IMPROVED, "improved on"), (WORSE, "fell on"),
                  (NOISE, "moved within the noise of the test clips on"), (UNCHANGED, "was unchanged on")]
        moved = [f"{words} {_list([c for c in self.changes if c.outcome == outcome])}"
                 for outcome, words in groups if any(c.outcome == outcome for c in self.changes)]
        parts = ["held-out J " + "; ".join(moved)] if moved else []
        unknown = [c for c in self.changes if c.outcome == UNKNOWN]
        if unknown:
            parts.append(f"{', '.join(_name(c.split) for c in unknown)} could not be compared (J missing)")
        sign_only = [c for c in self.changes if c.judged_by_sign and c.outcome in (IMPROVED, WORSE)]
        if sign_only:
            parts.append(f"{', '.join(_name(c.split) for c in sign_only)} judged by sign only (no per-clip scores)")
        return f"{self.stage} vs {self.previous}: " + "; ".join(parts) + "."


def _name(split: str) -> str:
    return "Mix" if split == "mix" else split


def _list(changes: list[SplitChange]) -> str:
    return ", ".join(f"{_name(c.split)} ({c.before:.4f} → {c.after:.4f}, {c.delta:+.4f}{_interval(c)})"
                     for c in changes)


def _interval(c: SplitChange) -> str:
    if c.judged_by_sign or c.outcome == UNCHANGED:
        return ""
    return f"; 95 % interval {c.low:+.4f} to {c.high:+.4f} over {c.clips} clips"


def _from_to(label: str, before: float, after: float, decimals: int = 3) -> str:
    if math.isnan(before) or math.isnan(after):
        return f"{label} not available in both stages"
    if round(after - before, decimals) == 0:
        return f"{label} unchanged at {after:.{decimals}f}"
    return f"{label} {before:.{decimals}f} → {after:.{decimals}f} ({after - before:+.{decimals}f})"


def judged_splits(results: dict) -> tuple[str, ...]:
    """The splits of one results.json whose J a verdict can judge (test_n has none; Mix only with
    both of its parts), in the order the results list them."""
    return tuple(s for s, r in results.items() if isinstance(r, dict) and not math.isnan(number(r.get("J"))))


def compare_stages(previous: str, prev: StageEval, stage: str, cur: StageEval,
                   splits: tuple[str, ...] = HELD_OUT) -> StageVerdict:
    changes = []
    for split in splits:
        before = number(prev.results.get(split, {}).get("J"))
        after = number(cur.results.get(split, {}).get("J"))
        change = SplitChange(split, before, after)
        diffs = clip_differences(prev, cur, MIX_PARTS if split == "mix" else (split,))
        if diffs and not math.isnan(change.delta):
            spread = bootstrap_mean_change(diffs)
            # the spread of the per-clip mean, placed around the change of J (clips weigh alike in both)
            change.low = change.delta + spread.low - spread.change
            change.high = change.delta + spread.high - spread.change
            change.clips = spread.clips
        changes.append(change)
    verdict = StageVerdict(stage, previous, changes)
    for change in changes:
        if change.improved is False:
            verdict.reasons[change.split] = (mix_reason(changes) if change.split == "mix"
                                             else explain_split(prev, cur, change.split))
    if "test_n" in prev.results and "test_n" in cur.results:
        s_before, s_after = number(prev.results["test_n"].get("S")), number(cur.results["test_n"].get("S"))
        verdict.notes.append(_from_to("test_n (null) S, lower is better:", s_before, s_after, DECIMALS))
    return verdict


def clip_differences(prev: StageEval, cur: StageEval, splits: tuple[str, ...]) -> list[np.ndarray]:
    """Per-clip IoU changes, one array per split, over the clips both stages scored; [] when a
    split has no such clip (then the change is judged by its sign)."""
    out = []
    for split in splits:
        before, after = ({u: s["iou"] for u, s in e.samples.items() if s["split"] == split} for e in (prev, cur))
        diffs = paired_differences(before, [after])
        if not len(diffs):
            return []
        out.append(diffs)
    return out


def mix_reason(changes: list[SplitChange]) -> list[str]:
    parts = [c for c in changes if c.split in MIX_PARTS and c.improved is not None]
    moves = " and ".join(f"{c.split} moved {c.delta:+.4f}" for c in parts)
    return [f"Mix is the mean of test_s and test_u J: {moves}." if moves else "Mix J fell."]


def explain_split(prev: StageEval, cur: StageEval, split: str) -> list[str]:
    """Plain sentences on what changed on ``split`` between two stages."""
    before, after = prev.split_samples((split,)), cur.split_samples((split,))
    out = [_failure_growth(before, after)]
    p, c = prev.results.get(split, {}), cur.results.get(split, {})
    out.append(_from_to("Class accuracy", number(p.get("class_acc")), number(c.get("class_acc"))) + ".")
    out.append(_from_to("Format rate (well-formed answers)", number(p.get("format_rate")),
                        number(c.get("format_rate"))) + ".")
    out.append(_transitions(prev, cur, split))
    mask = _mask_quality(prev, cur, split)
    if mask:
        out.append(mask)
    return out


def _failure_growth(before: list[dict], after: list[dict]) -> str:
    was = Counter(s["failure"] for s in before if s["failure"])
    now = Counter(s["failure"] for s in after if s["failure"])
    grew = sorted((k for k in now if now[k] > was[k]), key=lambda k: (was[k] - now[k], k))
    if not grew:
        return f"No failure kind grew ({sum(was.values())} → {sum(now.values())} failures in all)."
    listed = "; ".join(f"'{k}' {was[k]} → {now[k]}" for k in grew)
    return f"Failure kinds that grew: {listed} ({sum(was.values())} → {sum(now.values())} failures in all)."


def _transitions(prev: StageEval, cur: StageEval, split: str) -> str:
    both = [u for u, s in cur.samples.items() if s["split"] == split and u in prev.samples]
    moves = Counter((prev.samples[u]["failure"], cur.samples[u]["failure"]) for u in both
                    if prev.samples[u]["failure"] != cur.samples[u]["failure"])
    n = sum(moves.values())
    if not n:
        return f"None of the {_count(len(both), 'sample')} changed failure kind."
    worse = sum(v for (a, _), v in moves.items() if a is None)
    better = sum(v for (_, b), v in moves.items() if b is None)
    top = ", ".join(f"{v} from {_kind(a)} to {_kind(b)}" for (a, b), v in moves.most_common(3))
    return (f"{n} of {_count(len(both), 'sample')} changed failure kind ({worse} got a failure, {better} lost one, "
            f"{n - worse - better} swapped kinds): {top}.")


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _kind(kind: Optional[str]) -> str:
    return "fine" if kind is None else f"'{kind}'"


def _mask_quality(prev: StageEval, cur: StageEval, split: str) -> Optional[str]:
    """Mean IoU where both stages named the right class: separates mask quality from classification."""
    def right(s: dict) -> bool:
        return s["gt_class"] is not None and s["target_class"] == s["gt_class"]

    uids = [u for u, s in cur.samples.items()
            if s["split"] == split and u in prev.samples and right(s) and right(prev.samples[u])]
    if not uids:
        return None
    before = sum(prev.samples[u]["iou"] for u in uids) / len(uids)
    after = sum(cur.samples[u]["iou"] for u in uids) / len(uids)
    return _from_to(f"On the {_count(len(uids), 'sample')} whose class was right in both stages, mean IoU",
                    before, after) + "."


NOISE_NOTE = ("A stage counts as improved on a split only when the 95 % interval of its J change lies above 0: "
              "how far the change could move on another draw of test clips of the same size (paired bootstrap "
              "over the clips both stages were scored on).")


def stage_verdicts(names: list[str], evals: list[StageEval]) -> list[StageVerdict]:
    return [compare_stages(names[i - 1], evals[i - 1], names[i], evals[i]) for i in range(1, len(names))]


def verdict_markdown(verdicts: list[StageVerdict]) -> str:
    if not verdicts:
        return "Only one stage: nothing to compare."
    lines = [NOISE_NOTE, ""]
    for v in verdicts:
        lines.append(f"- **{v.label}**: {v.headline()}")
        for split, reasons in v.reasons.items():
            lines.append(f"  - why {_name(split)} did not improve: " + " ".join(reasons))
        lines += [f"  - {note}" for note in v.notes]
    return "\n".join(lines)


def verdict_json(verdicts: list[StageVerdict]) -> list[dict]:
    return [{"stage": v.stage, "previous": v.previous, "improved": v.improved, "label": v.label,
             "headline": v.headline(),
             "held_out_J": {c.split: {"before": c.before, "after": c.after, "improved": c.improved,
                                      "outcome": c.outcome, "clips": c.clips,
                                      "interval_95": None if c.judged_by_sign else [c.low, c.high]}
                            for c in v.changes},
             "reasons": v.reasons, "notes": v.notes} for v in verdicts]
