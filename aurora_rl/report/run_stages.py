"""Finding a report's stages in run folders: what ``aurora-rl report RUN...`` is given.

A RUN is either an evaluation folder (``results.json``, ``samples.jsonl``, ``masks_*.jsonl``,
as ``aurora-rl eval`` writes them) or a training run folder (``runs/<name>``: ``checkpoint/``,
``metrics.jsonl``) whose checkpoint was evaluated into one of ``EVAL_PLACES``. Real and tiny runs
are laid out alike.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from aurora_rl.report.eval_outputs import ReportError
from aurora_rl.report.stage_result import StageResult

# where an evaluation of run folder R is looked for: `aurora-rl eval --config` writes R/eval,
# `aurora-rl eval --ckpt R/checkpoint` writes R/checkpoint/eval/a
EVAL_PLACES = ("eval", "checkpoint/eval/a", "checkpoint/eval")


def stage_of(run: str | Path, name: Optional[str] = None) -> StageResult:
    """The report stage of ``run``, named ``name`` or after the folder."""
    run = Path(run)
    if not run.is_dir():
        raise ReportError(f"{run}: no such folder (give a run folder or an evaluation folder)")
    if (run / "results.json").is_file():
        return StageResult(name or run.name, None, run, _metrics(run.parent))
    for place in EVAL_PLACES:
        if (run / place / "results.json").is_file():
            checkpoint = run / "checkpoint" if (run / "checkpoint").is_dir() else None
            return StageResult(name or run.name, checkpoint, run / place, _metrics(run))
    looked = ", ".join(str(run / place) for place in EVAL_PLACES)
    raise ReportError(f"{run}: no evaluation found (looked in {looked}); evaluate it first, e.g. "
                      f"aurora-rl eval --ckpt {run / 'checkpoint'} --data DATA")


def _metrics(folder: Path) -> list[Path]:
    path = folder / "metrics.jsonl"
    return [path] if path.is_file() else []
