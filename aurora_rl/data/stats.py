"""``aurora-rl data stats``: counts of a Ref-AVS folder by split, expression kind and class.

Kinds and classes come from scene_facts.jsonl when present (synthetic data); otherwise the class
is the uid's class token and the kind is "null" for test_n rows and "unknown" for the rest.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from aurora_rl.data import refavs_layout as layout
from aurora_rl.data.scene_facts import load_scene_facts

NULL_CLASS = "(none)"


def compute_stats(root: str | Path) -> dict:
    """{"splits": {split: {"videos", "rows"}}, "kinds": {split: Counter}, "classes": {split: Counter},
    "templates": Counter, "skipped": Counter (rows of unknown splits, by split name), "repeated_uids":
    uids on more than one row}. Raises DataError when metadata.csv or the facts are invalid."""
    rows = layout.read_metadata(root)
    skipped = layout.parse_metadata(root).skipped
    facts = load_scene_facts(root)
    splits = {s: {"videos": 0, "rows": 0} for s in layout.SPLITS}
    kinds = {s: Counter() for s in layout.SPLITS}
    classes = {s: Counter() for s in layout.SPLITS}
    templates: Counter = Counter()
    videos = {s: set() for s in layout.SPLITS}
    for r in rows:
        f = facts.get(r.uid)
        splits[r.split]["rows"] += 1
        videos[r.split].add(r.vid)
        if f is not None:
            kinds[r.split][f["expression_kind"]] += 1
            classes[r.split][f["target_class"] or NULL_CLASS] += 1
            templates[f.get("template", "?")] += 1
        else:
            kinds[r.split]["null" if r.split == layout.NULL_SPLIT else "unknown"] += 1
            classes[r.split][NULL_CLASS if r.split == layout.NULL_SPLIT else layout.uid_class(r.uid)] += 1
    for s in layout.SPLITS:
        splits[s]["videos"] = len(videos[s])
    repeated = sum(n > 1 for n in Counter(r.uid for r in rows).values())
    return {"splits": splits, "kinds": kinds, "classes": classes, "templates": templates, "skipped": skipped,
            "repeated_uids": repeated}


def _table(title: str, columns: list[str], rows: list[tuple[str, list[int]]]) -> str:
    width = max([len(title)] + [len(name) for name, _ in rows])
    col_w = [max(6, len(c)) for c in columns]
    lines = [title.ljust(width) + "  " + "  ".join(c.rjust(w) for c, w in zip(columns, col_w))]
    for name, values in rows:
        lines.append(name.ljust(width) + "  " + "  ".join(str(v).rjust(w) for v, w in zip(values, col_w)))
    return "\n".join(lines)


def format_stats(stats: dict) -> str:
    """Three tables (splits, expression kinds x split, target classes x split) and the templates."""
    splits = [s for s in layout.SPLITS if stats["splits"][s]["rows"]]
    cols = splits + ["total"]

    def by_split(counters: dict) -> list[tuple[str, list[int]]]:
        keys = sorted(set().union(*(counters[s].keys() for s in splits)))
        return [(k, [counters[s][k] for s in splits] + [sum(counters[s][k] for s in splits)]) for k in keys]

    split_rows = [
        (what, [stats["splits"][s][what] for s in splits] + [sum(stats["splits"][s][what] for s in splits)])
        for what in ("videos", "rows")
    ]
    parts = [
        _table("split", cols, split_rows),
        _table("expression kind", cols, by_split(stats["kinds"])),
        _table("target class", cols, by_split(stats["classes"])),
    ]
    if stats["templates"]:
        parts.append("templates: " + ", ".join(f"{k} {v}" for k, v in sorted(stats["templates"].items())))
    notes = [layout.skipped_note(stats["skipped"])] if stats["skipped"] else []
    if stats["repeated_uids"]:
        notes.append(f"{stats['repeated_uids']} uid(s) on more than one row (each row is a sample of its own)")
    if notes:
        parts.append("\n".join(notes))
    return "\n\n".join(parts) + "\n"
