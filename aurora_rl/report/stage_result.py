"""What the main job hands the report about one stage of the recipe."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional


@dataclass
class StageResult:
    """One stage of the run, in recipe order.

    name: "untrained", "sft", "reflect" or "grpo" (any short name works; it labels rows and files).
    checkpoint: the stage's final checkpoint (None for the untrained policy).
    eval_dir: the ``aurora-rl eval`` output folder (results.json, samples.jsonl, masks_*.jsonl).
    metrics_files: the stage's training metrics.jsonl files (empty when it did not train).
    """

    name: str
    checkpoint: Optional[Path]
    eval_dir: Path
    metrics_files: list[Path] = field(default_factory=list)
