"""Errors of the data package: every failure and every validation problem names its file."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


class DataError(Exception):
    """A dataset file is missing, unreadable or inconsistent. ``path`` is the file at fault."""

    def __init__(self, path: str | Path, message: str):
        self.path = str(path)
        self.message = message
        super().__init__(f"{self.path}: {message}")


@dataclass(frozen=True)
class Problem:
    """One defect found by validation: its kind (a short code), the file at fault, what is wrong."""

    kind: str
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message} [{self.kind}]"
