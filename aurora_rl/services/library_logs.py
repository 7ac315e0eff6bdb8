"""Library output goes to files of the run folder; the console shows the job.

vLLM, Ray, DeepSpeed, transformers and torch write INFO lines, engine configurations thousands
of characters long and progress bars. A worker process (rollout, evaluation, learner, reward,
SFT rank) sends everything it writes, Python logging and C-level stdout / stderr alike, to a file
of the run folder (``capture_output``); the driver connects to Ray without the workers' output
forwarded and keeps the libraries' own loggers at WARNING. What the job says (stages, progress,
rate, ETA) the driver prints. After a stage, ``logs_line`` names the folder and sums up in one
line what the libraries warned about.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from pathlib import Path

LOG_DIR = "logs"  # <run folder>/logs/<worker>.log
_WARNING = re.compile(r"\bWARN(ING)?\b|Warning:")
_STAMP = re.compile(r"^(WARN(ING)?)\s+\d\d-\d\d \d\d:\d\d:\d\d(\.\d+)?\s+")  # vLLM's "WARNING 12-05 16:00:09 "


def capture_output(path: str | Path | None) -> Path | None:
    """From now on everything this process writes to stdout and stderr (file descriptors 1 and 2,
    so also native code and progress bars) is appended to ``path``; None leaves them as they are
    (a worker started without a run folder writes to Ray's worker log)."""
    if path is None:
        return None
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    return path


def worker_log(run_dir: str | Path, worker: str) -> Path:
    """Where worker ``worker`` of the run in ``run_dir`` writes: ``<run_dir>/logs/<worker>.log``."""
    return Path(run_dir) / LOG_DIR / f"{worker}.log"


class _DriverNoise(logging.Filter):
    """DeepSpeed's accelerator guess, which it prints wherever it is imported: the driver trains nothing."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Setting accelerator to CPU")


def quiet_driver() -> None:
    """In the driver: library progress bars off (a checkpoint save draws one per shard), and
    DeepSpeed's accelerator guess (it is imported beside transformers) kept off the console. Set
    before any library is imported (transformers reads the environment then), so that a command
    that needs none (``config show``) imports none."""
    logging.getLogger("DeepSpeed").addFilter(_DriverNoise())
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "warning")


def logs_line(folder: str | Path, what: str) -> str:
    """One line that names ``folder`` (the logs of a stage's workers) and sums up what the libraries
    warned about there: "[sft] library logs in runs/x/logs: 12 warnings (first: ...)"."""
    count, first = 0, None
    for path in sorted(Path(folder).glob("*.log")):
        for line in path.read_text(errors="replace").splitlines():
            found = _WARNING.search(line)
            if found:
                count += 1
                first = first or _STAMP.sub(r"\1 ", line[found.start():].strip())[:160]
    if not count:
        return f"[{what}] library logs in {folder}: no warnings"
    return f"[{what}] library logs in {folder}: {count} warning{'s' * (count != 1)} (first: {first})"
