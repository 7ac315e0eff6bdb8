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


@dataclass
class Outcome:
    value: Any = None
    died: bool = False  # the actor is gone (its call will never return)
    error: Optional[BaseException] = None  # the call raised (the actor may still be alive)

    @property
    def ok(self) -> bool:
        return not self.died and self.error is None


def gather(refs: list, timeout_s: Optional[float] = None) -> list[Outcome]:
    """The outcome of every call in ``refs``, in order; waits for all of them (at most ``timeout_s``:
    a call still running then raises ``GetTimeoutError``)."""
    import ray
    from ray.exceptions import GetTimeoutError, RayActorError

    if not refs:
        return []
    _, pending = ray.wait(refs, num_returns=len(refs), timeout=timeout_s)
    if pending:
        raise GetTimeoutError(f"{len(pending)} of {len(refs)} actor calls still running after {timeout_s} s")
    out = []
    for ref in refs:
        try:
            out.append(Outcome(value=ray.get(ref)))
        except RayActorError as e:
            out.append(Outcome(died=True, error=e))
        except Exception as e:  # the remote method raised: RayTaskError wrapping its exception
            out.append(Outcome(error=e))
    return out


def alive(actor, timeout_s: float = 60.0) -> bool:
    """Whether ``actor`` still answers (Ray's built-in ready call; queued behind its running call)."""
    import ray
    from ray.exceptions import RayActorError

    try:
        ray.get(actor.__ray_ready__.remote(), timeout=timeout_s)
        return True
    except RayActorError:
        return False
