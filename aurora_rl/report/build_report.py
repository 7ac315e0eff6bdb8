"""Assembles the report of the main job from the stages' evaluation folders and training logs.

out_dir/
  index.html            the page (table, verdict, curves, overlays)
  results.md, .json     the table and the verdict
  curves/<stage>.png    training curves of each stage that trained
  overlays/<stage>/<uid>.png  the same example clips for every stage
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Optional

from aurora_rl.report.curves import plot_stage_curves
from aurora_rl.report.eval_outputs import load_stage_eval
from aurora_rl.report.html_page import PageContent, StageInfo, render_page
from aurora_rl.report.metrics_log import read_metrics
from aurora_rl.report.overlays import choose_examples, render_overlays, safe_name
from aurora_rl.report.results_table import json_safe, markdown_table, table_rows
from aurora_rl.report.stage_result import StageResult
from aurora_rl.report.verdict import stage_verdicts, verdict_json, verdict_markdown


def build_report(demo_dir: Path, stages: list[StageResult], data_root: Path, out_dir: Path) -> Path:
    """Write the report under ``out_dir`` and return its index.html.

    demo_dir: the run's output folder; stage paths are shown relative to it.
    stages: in recipe order (each stage is compared with the one before it).
    data_root: the Ref-AVS-layout dataset the stages were evaluated on (frames for the overlays).
    """
    if not stages:
        raise ValueError("build_report needs at least one stage")
    names = [s.name for s in stages]
    if len(set(names)) != len(names):
        raise ValueError(f"stage names must be distinct, got {names}")
    demo_dir, data_root, out_dir = Path(demo_dir), Path(data_root), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    evals = [load_stage_eval(s.eval_dir) for s in stages]

    rows = table_rows(names, evals)
    verdicts = stage_verdicts(names, evals)
    (out_dir / "results.md").write_text(
        f"# Results by stage\n\n{markdown_table(rows)}\n\n## Verdict\n\n{verdict_markdown(verdicts)}\n")
    (out_dir / "results.json").write_text(json.dumps(json_safe({
        "stages": [{"name": s.name, "checkpoint": _shown(s.checkpoint, demo_dir), "eval_dir": _shown(s.eval_dir, demo_dir)}
                   for s in stages],
        "rows": rows,
        "verdict": verdict_json(verdicts),
    }), indent=2))

    curves = {}
    for s in stages:
        png = plot_stage_curves(s.name, read_metrics(s.metrics_files), out_dir / "curves" / f"{safe_name(s.name)}.png")
        curves[s.name] = None if png is None else _rel(png, out_dir)

    examples = choose_examples(evals)
    overlays = render_overlays(names, evals, examples, data_root, out_dir / "overlays")
    content = PageContent(
        stages=[StageInfo(s.name, _shown(s.checkpoint, demo_dir) or "none (untrained)", _shown(s.eval_dir, demo_dir),
                          len(s.metrics_files)) for s in stages],
        rows=rows, verdicts=verdicts, curves=curves, examples=examples,
        overlays={uid: {stage: _rel(p, out_dir) for stage, p in by_stage.items()} for uid, by_stage in overlays.items()},
        answers={e.key: {n: ev.samples[e.key] for n, ev in zip(names, evals)} for e in examples},
    )
    index = out_dir / "index.html"
    index.write_text(render_page(content), encoding="utf-8")
    return index


def _rel(path: Path, out_dir: Path) -> str:
    return Path(os.path.relpath(path, out_dir)).as_posix()


def _shown(path: Optional[Path], demo_dir: Path) -> Optional[str]:
    """A path relative to the demo folder when it lies inside it, else as given."""
    if path is None:
        return None
    try:
        return Path(path).resolve().relative_to(demo_dir.resolve()).as_posix()
    except ValueError:
        return str(path)
