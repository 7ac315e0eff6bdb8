"""``aurora-rl preflight CONFIG``: a GRPO config's cluster checked before a long job.

Starts the job's roles as the run would (placement, rollout actors whose vLLM engines get the
context length derived from the backbone, learner ranks in one DeepSpeed group, reward workers),
forms the weight-broadcast group across their nodes and sends the first weights, takes one real
step of every role (sampling, [SEG] pass and SAM, rewards, the learner step, the broadcast of the
new weights), then asks every role for its device's memory. Nothing is saved; the job's folder
is ``<run.name>-preflight``. One table: what was checked, where, ok, seconds, the process's
memory, the device's free memory of its total, and what will not fit or is tight.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import Optional

from aurora_rl.config.schema import GRPOConfig
from learner.train_log import say

TIGHT = 0.10  # a device with less free memory than this share of it is flagged


@dataclass
class Check:
    what: str
    ok: bool
    seconds: Optional[float] = None
    node: str = ""
    device: str = ""
    process_gib: Optional[float] = None
    free_gib: Optional[float] = None
    total_gib: Optional[float] = None
    note: str = ""


def error_line(error: BaseException) -> str:
    """The cause of a failure in one line (a Ray error ends with the original exception)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    cause = lines[-1] if lines else ""
    return cause if ":" in cause else f"{type(error).__name__}: {cause}"


def preflight_grpo(cfg: GRPOConfig, redis_url: str, log=say) -> list[Check]:
    """The checks of ``cfg``'s job, in order; a failed start ends them (the table says why)."""
    from learner.grpo_job import GRPOJob

    cfg = dataclasses.replace(cfg, run=dataclasses.replace(cfg.run, name=f"{cfg.run.name}-preflight"))
    job = GRPOJob(cfg, redis_url, log=log)
    checks: list[Check] = []

    def timed(what: str, fn) -> Optional[object]:
        log(f"[preflight] {what} ...")
        start = time.monotonic()
        try:
            out = fn()
        except Exception as e:  # what failed is a row of the table and the exit status
            checks.append(Check(what, False, time.monotonic() - start, note=error_line(e)))
            return None
        checks.append(Check(what, True, time.monotonic() - start))
        return out

    try:
        roles = (f"{count(cfg.rollout.num_actors, 'rollout engine')}, {count(cfg.learner.num_ranks, 'learner rank')}, "
                 f"{count(cfg.reward.num_workers, 'reward worker')}")
        started = timed(f"start: {roles}, the broadcast group and the first weights", lambda: job.start() or True)
        if not started:
            return checks
        metrics = timed("one step of every role: sampling + [SEG] + SAM, rewards, learner, broadcast",
                        job.trial_step)
        if metrics:
            checks[-1].note = (f"reward {metrics.get('reward', float('nan')):.3g}, "
                               f"{metrics.get('completion_tokens', 0):.0f} tokens per completion, learner "
                               f"{metrics.get('time_learn_s', 0):.2f} s, "
                               f"broadcast {metrics.get('time_broadcast_s', 0):.2f} s")
        for role, report in job.memory():
            checks.append(memory_check(role, report))
    finally:
        job.stop()
    return checks


def count(n: int, what: str) -> str:
    return f"{n} {what}{'' if n == 1 else 's'}"


def memory_check(role: str, report: dict) -> Check:
    if "error" in report:
        return Check(f"{role}: memory", False, note=report["error"])
    free, total = report["free_gib"], report["total_gib"]
    note = f"vLLM max_model_len {report['max_model_len']}" if "max_model_len" in report else ""
    if free < TIGHT * total:
        note = f"tight: {free / total:.0%} of the device free" + (f"; {note}" if note else "")
    return Check(f"{role}: memory", True, node=report.get("node", ""), device=report["device"],
                 process_gib=report["process_gib"], free_gib=free, total_gib=total, note=note)


def table(checks: list[Check]) -> str:
    def gib(v):
        return "-" if v is None else f"{v:.1f}"

    lines = ["| check | ok | seconds | node | device | process GiB | free / total GiB | note |",
             "|---|---|---:|---|---|---:|---:|---|"]
    for c in checks:
        free = "-" if c.total_gib is None else f"{gib(c.free_gib)} / {gib(c.total_gib)}"
        lines.append(f"| {c.what} | {'yes' if c.ok else 'NO'} | {'-' if c.seconds is None else f'{c.seconds:.1f}'} | "
                     f"{c.node or '-'} | {c.device or '-'} | {gib(c.process_gib)} | {free} | {c.note} |")
    return "\n".join(lines)
