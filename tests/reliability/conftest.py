"""Fixtures of the fault suite. Its tests fill the fault table's rows (``fault_row``, tests/conftest.py)."""

from __future__ import annotations

import os

from tests.grpo.test_grpo_job import start_checkpoint  # noqa: F401  (a fixture, shared)


def fault_lag(default: int) -> int:
    """The ``learner.max_policy_lag`` of a fault module's job: its own, or ``AURORA_FAULT_LAG``
    (``bench/faults.py`` runs the job's faults at k = 0 and 1)."""
    return int(os.environ.get("AURORA_FAULT_LAG", default))


def pid_of(actor) -> int:
    """The PID of a Ray actor's worker process (to signal it as the kernel would)."""
    import ray

    return ray.get(actor.__ray_call__.remote(lambda self: os.getpid()))
