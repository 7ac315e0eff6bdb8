"""The results table: one row per stage and split, numbers taken from each stage's results.json."""

from __future__ import annotations

import math

from aurora_rl.report.eval_outputs import StageEval, number

SPLIT_ORDER = ("val", "test_s", "test_u", "test_n")
HELD_OUT = ("test_s", "test_u", "mix")  # the splits whose J decides whether a stage helped
COLUMNS = ("J", "F", "S", "class_acc", "format_rate", "clips")
HEADERS = {"J": "J", "F": "F", "S": "S (null, lower is better)", "class_acc": "class acc",
           "format_rate": "format rate", "clips": "clips", "dJ": "ΔJ vs previous stage"}


def ordered_splits(evals: list[StageEval]) -> list[str]:
    """Splits seen in any stage: the Ref-AVS ones in their usual order, others sorted, Mix last."""
    seen = {s for e in evals for s in e.results if s != "mix"}
    known = [s for s in SPLIT_ORDER if s in seen]
    return known + sorted(seen - set(known)) + ["mix"]


def table_rows(names: list[str], evals: list[StageEval]) -> list[dict]:
    """[{stage, split, J, F, S, class_acc, format_rate, clips, dJ}] with NaN where a value does not apply.

    dJ is held-out J minus the previous stage's J on the same split (NaN for the first stage,
    for splits outside HELD_OUT, and where either J is missing).
    """
    rows = []
    splits = ordered_splits(evals)
    for i, (name, ev) in enumerate(zip(names, evals)):
        for split in splits:
            if split not in ev.results:
                continue
            got = ev.results[split]
            row = {"stage": name, "split": split}
            for c in COLUMNS:
                row[c] = number(got.get(c))
            row["dJ"] = math.nan
            if i > 0 and split in HELD_OUT:
                prev = evals[i - 1].results.get(split, {})
                row["dJ"] = row["J"] - number(prev.get("J"))
            rows.append(row)
    return rows


def _cell(value, signed: bool = False) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:+.4f}" if signed else f"{value:.4f}"


def cells(row: dict) -> list[str]:
    """The printed cells of one row, in header order (shared by Markdown and HTML)."""
    values = [_cell(row[c]) if c != "clips" or math.isnan(row[c]) else str(int(row[c])) for c in COLUMNS]
    return [row["stage"], row["split"]] + values + [_cell(row["dJ"], signed=True)]


def header() -> list[str]:
    return ["stage", "split"] + [HEADERS[c] for c in COLUMNS] + [HEADERS["dJ"]]


def markdown_table(rows: list[dict]) -> str:
    lines = ["| " + " | ".join(header()) + " |", "|" + "---|" * len(header())]
    lines += ["| " + " | ".join(cells(r)) + " |" for r in rows]
    return "\n".join(lines)


def json_safe(value):
    """NaN -> None throughout, so results.json is strict JSON."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [json_safe(v) for v in value]
    return value
