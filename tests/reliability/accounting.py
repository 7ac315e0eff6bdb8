"""Counting a GRPO job's records end to end, from the streams in Redis and what the job learned.

Every record id sampled must be scored exactly once; every scored record must be learned from
(at most once, in a step that learned each of its P prompts exactly once) or belong to a group
the job dropped and counted: abandoned (its actor died, or its step was rolled back) or dropped
whole (a step skipped for a non-finite loss, a group more than ``max_policy_lag`` versions old). Anything else is reported as lost or duplicated.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from dataclasses import dataclass, field

from aurora_rl.record_stream import RecordStream
from aurora_rl.records import decode

GROUP_ID = re.compile(r"^[0-9a-f]+/s(?P<step>\d+)/p(?P<prompt>\d+)(/r\d+)?$")


@dataclass
class Account:
    sampled: int = 0  # distinct record ids the rollout actors published
    published_twice: int = 0  # extra copies of an id in the rollout stream (a retried XADD)
    scored: int = 0  # distinct record ids the reward workers published
    learned: int = 0  # records the learner stepped on
    dropped: list[str] = field(default_factory=list)  # scored records of groups dropped and counted
    lost: list[str] = field(default_factory=list)
    duplicated: list[str] = field(default_factory=list)


def wait_scored(job, timeout_s: float = 60.0) -> None:
    """Until the reward workers have consumed the rollout stream (late records of abandoned groups too)."""
    stream = RecordStream(job.redis, job.queue.rollout_stream, "scorers")
    deadline = time.monotonic() + timeout_s
    while stream.depth() > 0:
        assert time.monotonic() < deadline, f"{stream.depth()} rollout records never scored"
        time.sleep(0.1)


def account(job) -> Account:
    wait_scored(job)
    client = job.redis
    sampled = Counter(decode(f[b"r"]).record_id for _, f in client.xrange(job.queue.rollout_stream))
    scored_records = [decode(f[b"r"]) for _, f in client.xrange(job.queue.scored_stream)]
    scored = Counter(r.record_id for r in scored_records)
    g, p = job.cfg.rollout.sampling.group_size, job.cfg.learner.prompts_per_step
    out = Account(sampled=len(sampled), published_twice=sum(sampled.values()) - len(sampled), scored=len(scored))
    out.duplicated += [f"{rid} scored {n} times" for rid, n in scored.items() if n > 1]
    out.lost += [f"{rid} sampled, never scored" for rid in sampled if rid not in scored]
    learned, versions = [], {}
    stale = {(int(m["step"]) + 1, int(m["prompt"])) for m in map(GROUP_ID.match, job.collector.dropped_groups)
             if m and job.collector.dropped_groups[m.string] == "stale_dropped"}  # dropped whole, counted
    for step, group_ids in sorted(job.learned_groups.items()):
        ids = [GROUP_ID.match(gid) for gid in group_ids]
        assert all(ids), group_ids
        prompts = Counter(int(m["prompt"]) for m in ids)
        out.duplicated += [f"step {step}: prompt {j} learned {n} times" for j, n in prompts.items() if n > 1]
        out.lost += [f"step {step}: prompt {j} not learned" for j in range(p) if j not in prompts
                     and (step, j) not in stale]
        out.duplicated += [f"step {step} learned {gid} of another step" for gid, m in zip(group_ids, ids)
                           if int(m["step"]) != step - 1]
        learned += [f"{gid}/{k}" for gid in group_ids for k in range(g)]
    out.learned = len(learned)
    learned_set = set(learned)
    out.duplicated += [f"{rid} learned twice" for rid, n in Counter(learned).items() if n > 1]
    out.lost += [f"{rid} learned but not in the scored stream" for rid in learned_set if rid not in scored]
    if job.counters["learned"] != out.learned:
        out.duplicated.append(f"job counted {job.counters['learned']} learned records, the steps hold {out.learned}")
    for r in scored_records:
        dropped = job.collector.is_abandoned(r.group_id) or r.group_id in job.collector.dropped_groups
        if r.record_id in learned_set and dropped:
            out.duplicated.append(f"{r.record_id} learned although its group was dropped")
        elif r.record_id not in learned_set and not dropped:
            out.lost.append(f"{r.record_id} scored, neither learned nor dropped and counted")
        if dropped:
            out.dropped.append(r.record_id)
        if r.record_id in learned_set:
            versions.setdefault(r.group_id.split("/")[1], set()).add(r.policy_version)
    mixed = {s: v for s, v in versions.items() if len(v) > 1}
    out.duplicated += [f"step {s} learned records of policy versions {sorted(v)}" for s, v in mixed.items()]
    return out
