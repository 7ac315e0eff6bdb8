"""Fixtures of the fault suite, and the rows of its fault table.

A test that injects a fault fills a ``fault_row`` (what was lost, duplicated, dropped and counted,
how long recovery took). When ``AURORA_FAULT_TABLE`` names a file, each row is appended to it as
one JSON line with whether the test passed: ``bench/faults.py`` runs this suite and prints them.
"""

from __future__ import annotations

import json
import os

import pytest

from tests.grpo.test_grpo_job import start_checkpoint  # noqa: F401  (a fixture, shared)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.when == "call":
        item.fault_call_passed = report.passed


@pytest.fixture
def fault_row(request):
    """A dict to fill: fault, lost, duplicated, dropped (counted), recovery_s."""
    row = {"fault": request.node.name, "lost": None, "duplicated": None, "dropped": 0, "recovery_s": None}
    yield row
    path = os.environ.get("AURORA_FAULT_TABLE")
    if path:
        row.update(test=request.node.nodeid, survived=bool(getattr(request.node, "fault_call_passed", False)))
        with open(path, "a") as f:
            f.write(json.dumps(row) + "\n")
