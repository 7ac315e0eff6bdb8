"""The rows of a metadata CSV with their line numbers, an unreadable row named instead of ending the read."""

from __future__ import annotations

import csv
from collections.abc import Iterator


def csv_records(lines: list[str]) -> Iterator[tuple[int, list[str] | csv.Error]]:
    """(line, fields) for every row, the header being line 1. A row the csv module cannot read (a
    field over its size limit, a NUL byte) comes as (line, its csv.Error) and the rows after it are
    still read: a reader names that line, where ``csv.reader`` would raise out of the loop."""
    reader = csv.reader(lines)
    line = 0
    while True:
        line += 1
        try:
            yield line, next(reader)
        except StopIteration:
            return
        except csv.Error as e:
            yield line, e
