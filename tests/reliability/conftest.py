"""Fixtures of the fault suite. Its tests fill the fault table's rows (``fault_row``, tests/conftest.py)."""

from __future__ import annotations

from tests.grpo.test_grpo_job import start_checkpoint  # noqa: F401  (a fixture, shared)
