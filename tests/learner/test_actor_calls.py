"""Waiting on Ray actors: every bounded wait names what it waited for and who did not answer."""

from __future__ import annotations

import time

import pytest

from learner.actor_calls import Stalled, alive, results


def member_class():
    import ray

    @ray.remote(num_cpus=0)
    class Member:
        def echo(self, value):
            return value

        def fail(self):
            raise ValueError("row 3 of train.csv has no uid")

        def hang(self, seconds: float) -> None:
            time.sleep(seconds)

    return Member


def test_results_come_in_order_and_a_wait_that_runs_out_names_who_did_not_answer(ray_node):
    import ray

    member = member_class()
    a, b = member.remote(), member.remote()
    assert results([a.echo.remote(1), b.echo.remote(2)], 60, ["a", "b"], "echoes") == [1, 2]
    with pytest.raises(ValueError, match="row 3 of train.csv has no uid"):  # the call's own error, as ray.get
        results([a.echo.remote(1), b.fail.remote()], 60, ["a", "b"], "calls")

    b.hang.remote(30)  # b is busy: what is queued behind it does not answer
    with pytest.raises(Stalled, match=r"^saving the checkpoint: no answer within 1 s from b$") as stalled:
        results([a.echo.remote(1), b.echo.remote(2)], 1, ["a", "b"], "saving the checkpoint")
    assert stalled.value.waited_for == ["b"]
    with pytest.raises(Stalled, match=r"^a check that it is alive: no answer within 1 s from rollout-1$"):
        alive(b, timeout_s=1, name="rollout-1")
    assert alive(a, timeout_s=30)
    ray.kill(b)
    assert not alive(b, timeout_s=30)  # dead is an answer, not a wait
