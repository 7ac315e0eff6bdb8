"""Awaiting calls on Ray actors when some of them may die.

``gather`` waits for every call, so one dead actor does not leave the others' results unread
(a rollout actor's records are already in Redis whether or not its caller looks), and sorts
each outcome: a result, the actor died (``RayActorError``: killed, out of memory, node lost),
or the call raised. The caller decides what each means; ``alive`` tells a dead actor from a
failed call (a collective fails on the survivors when one member dies).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

from ray.exceptions import GetTimeoutError


@dataclass
class Outcome:
    value: Any = None
    died: bool = False  # the actor is gone (its call will never return)
    error: Optional[BaseException] = None  # the call raised (the actor may still be alive)

    @property
    def ok(self) -> bool:
        return not self.died and self.error is None


class Stalled(GetTimeoutError):
    """A wait that ran out; the message says what was awaited and who had not answered."""

    def __init__(self, what: str, waited_for: list[str], timeout_s: float):
        super().__init__(f"{what}: no answer within {timeout_s:g} s from {', '.join(waited_for)}")
        self.waited_for = waited_for


class Stranded(RuntimeError):
    """A call still running well after another call of the same collective failed: it waits for
    a peer that will never join (the caller stops its actor)."""


def gather(refs: list, timeout_s: Optional[float] = None, settle_s: Optional[float] = None,
           names: Optional[list[str]] = None, what: str = "actor calls") -> list[Outcome]:
    """The outcome of every call in ``refs``, in order; waits for all of them (at most ``timeout_s``:
    a call still running then raises a ``GetTimeoutError`` naming ``what`` was awaited and, by
    ``names`` (one per call), who had not answered).

    ``settle_s``: the calls are one collective (each waits for the others). Once one has failed,
    the rest get ``settle_s`` more seconds; one still running then is a ``Stranded`` outcome.
    """
    import time

    import ray

    if not refs:
        return []
    names = names or [f"call {i}" for i in range(len(refs))]

    def stalled(pending: list):
        waiting = set(pending)
        return Stalled(what, [n for n, ref in zip(names, refs) if ref in waiting], timeout_s)

    if settle_s is None:
        _, pending = ray.wait(refs, num_returns=len(refs), timeout=timeout_s)
        if pending:
            raise stalled(pending)
        return [_outcome(ref) for ref in refs]
    done: dict = {}
    pending, deadline, failed_at = list(refs), None if timeout_s is None else time.monotonic() + timeout_s, None
    while pending:
        now = time.monotonic()
        waits = [t - now for t in (deadline, None if failed_at is None else failed_at + settle_s) if t is not None]
        if waits and min(waits) <= 0:
            break
        ready, pending = ray.wait(pending, num_returns=1, timeout=min(waits) if waits else None)
        for ref in ready:
            done[ref] = _outcome(ref)
            if not done[ref].ok and failed_at is None:
                failed_at = time.monotonic()
    if pending and failed_at is None:
        raise stalled(pending)
    stranded = Stranded(f"still running {settle_s:g} s after another call of the collective failed")
    return [done.get(ref) or Outcome(error=stranded) for ref in refs]


def results(refs: list, timeout_s: float, names: list[str], what: str) -> list:
    """Every call's result, in order, as ``ray.get`` would give them but waiting at most
    ``timeout_s`` (``Stalled``, naming who had not answered); the first call that failed raises
    its error."""
    outcomes = gather(refs, timeout_s, names=names, what=what)
    failed = next((o.error for o in outcomes if not o.ok), None)
    if failed is not None:
        raise failed
    return [o.value for o in outcomes]


def _outcome(ref) -> Outcome:
    import ray
    from ray.exceptions import RayActorError

    try:
        return Outcome(value=ray.get(ref))
    except RayActorError as e:
        return Outcome(died=True, error=e)
    except Exception as e:  # the remote method raised: RayTaskError wrapping its exception
        return Outcome(error=e)


def alive(actor, timeout_s: float = 60.0, name: str = "an actor") -> bool:
    """Whether ``actor`` (called ``name`` in errors) still answers: Ray's built-in ready call, which
    a hung actor never answers (``Stalled`` after ``timeout_s``)."""
    import ray
    from ray.exceptions import RayActorError

    try:
        ray.get(actor.__ray_ready__.remote(), timeout=timeout_s)
        return True
    except RayActorError:
        return False
    except GetTimeoutError:
        raise Stalled("a check that it is alive", [name], timeout_s) from None
