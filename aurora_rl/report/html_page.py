"""index.html: the table, the verdict, the curves and the overlay grids on one self-contained page.

Every link is relative to the page, so the report folder can be moved or copied as a whole.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from html import escape
from urllib.parse import quote

from aurora_rl.report.overlays import Example
from aurora_rl.report.results_table import cells, header
from aurora_rl.report.verdict import IMPROVED, NOISE_NOTE, WORSE, StageVerdict

CSS = """
body { font-family: sans-serif; max-width: 1400px; margin: 1.5em auto; padding: 0 1em; color: #222; }
table { border-collapse: collapse; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: right; }
th { background: #eee; } td:nth-child(-n+2) { text-align: left; }
tr.first td { border-top: 2px solid #888; }
.up { color: #11772d; } .down { color: #b3261e; font-weight: bold; }
li.bad > b { color: #b3261e; } li.good > b { color: #11772d; }
img { max-width: 100%; border: 1px solid #ddd; }
.stages { display: flex; flex-wrap: wrap; gap: 12px; }
.stages figure { margin: 0; flex: 1 1 420px; }
pre { white-space: pre-wrap; background: #f6f6f6; padding: 6px; font-size: 0.85em; }
"""


@dataclass
class StageInfo:
    name: str
    checkpoint: str  # shown as text: checkpoints live outside the report folder
    eval_dir: str
    metrics_files: int


@dataclass
class PageContent:
    """Everything the page shows; every path is relative to the page's folder."""

    stages: list[StageInfo]
    rows: list[dict]
    verdicts: list[StageVerdict]
    curves: dict[str, str | None]  # stage -> PNG, None when it logged no training metrics
    examples: list[Example]
    overlays: dict[str, dict[str, str]]  # sample key -> stage -> PNG
    answers: dict[str, dict[str, dict]]  # sample key -> stage -> samples.jsonl row
    files: list[str] = field(default_factory=lambda: ["results.md", "results.json"])


def render_page(c: PageContent) -> str:
    parts = ["<!DOCTYPE html>", "<html><head><meta charset='utf-8'><title>aurora_rl report</title>",
             f"<style>{CSS}</style></head><body>", "<h1>aurora_rl run report</h1>",
             _stages(c.stages),
             "<p>Tables as files: " + ", ".join(f"<a href='{_url(f)}'>{escape(f)}</a>" for f in c.files) + "</p>",
             "<h2 id='results'>Results</h2>", _table(c.rows, c.verdicts),
             "<h2 id='verdict'>Verdict</h2>", _verdict(c.verdicts),
             "<h2 id='curves'>Training curves</h2>", _curves(c.curves),
             "<h2 id='examples'>Examples</h2>",
             "<p>The same clips for every stage. Each grid: magenta = predicted mask (p &gt; 0.5), white "
             "outline = ground truth.</p>"]
    parts += [_example(e, c.overlays.get(e.key, {}), c.answers.get(e.key, {})) for e in c.examples]
    parts.append("</body></html>")
    return "\n".join(parts)


def _url(path: str) -> str:
    """A relative path as an attribute value: percent-encoded (spaces, '#'), then HTML-escaped."""
    return escape(quote(path))


def _stages(stages: list[StageInfo]) -> str:
    rows = "".join(f"<tr><td>{escape(s.name)}</td><td>{escape(s.checkpoint)}</td><td>{escape(s.eval_dir)}</td>"
                   f"<td>{s.metrics_files}</td></tr>" for s in stages)
    return ("<table><tr><th>stage</th><th>checkpoint</th><th>evaluation folder</th><th>metrics files</th></tr>"
            f"{rows}</table>")


def _table(rows: list[dict], verdicts: list[StageVerdict]) -> str:
    """The results table; a ΔJ is coloured only where the verdict finds it beyond the clips' noise."""
    outcomes = {(v.stage, c.split): c.outcome for v in verdicts for c in v.changes}
    out = ["<table><tr>" + "".join(f"<th>{escape(h)}</th>" for h in header()) + "</tr>"]
    previous = None
    for r in rows:
        texts = cells(r)
        cls = {IMPROVED: " class='up'", WORSE: " class='down'"}.get(outcomes.get((r["stage"], r["split"])), "")
        tds = "".join(f"<td>{escape(t)}</td>" for t in texts[:-1]) + f"<td{cls}>{escape(texts[-1])}</td>"
        first = " class='first'" if previous is not None and r["stage"] != previous else ""
        out.append(f"<tr{first}>{tds}</tr>")
        previous = r["stage"]
    return "".join(out) + "</table>"


def _verdict(verdicts: list[StageVerdict]) -> str:
    if not verdicts:
        return "<p>Only one stage: nothing to compare.</p>"
    items = []
    for v in verdicts:
        inner = "".join(f"<li>why {escape('Mix' if s == 'mix' else s)} did not improve: {escape(' '.join(r))}</li>"
                        for s, r in v.reasons.items())
        inner += "".join(f"<li>{escape(n)}</li>" for n in v.notes)
        tone = "good" if v.improved else ("bad" if v.label in ("got worse", "mixed") else "plain")
        items.append(f"<li class='{tone}'><b>{escape(v.label)}</b>: {escape(v.headline())}<ul>{inner}</ul></li>")
    return f"<p>{escape(NOISE_NOTE)}</p><ul>" + "".join(items) + "</ul>"


def _curves(curves: dict[str, str | None]) -> str:
    out = []
    for stage, path in curves.items():
        if path is None:
            out.append(f"<p>Stage {escape(stage)}: no training metrics (it did not train).</p>")
        else:
            out.append(f"<h3>{escape(stage)}</h3><img src='{_url(path)}' alt='training curves of {escape(stage)}'>")
    return "\n".join(out)


def _example(e: Example, overlays: dict[str, str], answers: dict[str, dict]) -> str:
    figs = []
    for stage, path in overlays.items():
        a = answers.get(stage, {})
        figs.append(f"<figure><img src='{_url(path)}' alt='{escape(stage)} on {escape(e.uid)}'>"
                    f"<figcaption><b>{escape(stage)}</b>: IoU {a.get('iou', float('nan')):.3f}, predicted "
                    f"{escape(a.get('target_class') or '-')}, failure: {escape(str(a.get('failure') or 'none'))}"
                    f"<pre>{escape(a.get('text', ''))}</pre></figcaption></figure>")
    kind = f" [{escape(e.kind)}]" if e.kind else ""
    return (f"<h3 id='{escape(e.key)}'>{escape(e.split)}: “{escape(e.expression)}”{kind}</h3>"
            f"<p>{escape(e.uid)}</p><div class='stages'>{''.join(figs)}</div>")
