"""Poison records on the reward path, injected for real: a real Redis, scorers in processes of
their own, real files. A record whose handling raises anything is dead-lettered with the reason
and the scorer goes on; one that kills every scorer that takes it (SIGKILL, as the kernel's
out-of-memory killer does) is dead-lettered after ``queue.max_deliveries`` deliveries while the
records beside it are scored; answer parsing takes time linear in its input.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
import uuid

import numpy as np

from aurora_rl.config.schema import QueueConfig
from aurora_rl.data import refavs_layout as layout
from aurora_rl.record_stream import FIELD, RecordStream
from aurora_rl.records import RolloutRecord, decode, encode
from rewards.stream_scorer import GROUP
from tests.data.layout_fixtures import write_refavs_fixture

MASK = 32

# One scorer process: ``python -c SCORER redis_url queue_json data_root address_space_bytes name idle_s``.
SCORER = """
import json, resource, sys
url, queue, root, limit, name, idle = sys.argv[1:]
if int(limit):
    resource.setrlimit(resource.RLIMIT_AS, (int(limit), int(limit)))
from aurora_rl.config.schema import QueueConfig, RewardConfig
from rewards.ground_truth import GroundTruth
from rewards.stream_scorer import StreamScorer, scorer_client
scorer = StreamScorer(scorer_client(url, 100), QueueConfig(**json.loads(queue)), RewardConfig(),
                      GroundTruth(root, None, %d), name)
print(json.dumps(scorer.run(stop_when_idle_s=float(idle), block_ms=100)), flush=True)
""" % MASK


def start_scorer(redis_url: str, queue: QueueConfig, root, name: str, address_space: int = 0, idle_s: float = 3.0):
    fields = {"rollout_stream": queue.rollout_stream, "scored_stream": queue.scored_stream,
              "claim_idle_ms": queue.claim_idle_ms, "max_deliveries": queue.max_deliveries}
    return subprocess.Popen([sys.executable, "-c", SCORER, redis_url, json.dumps(fields), str(root), str(address_space),
                             name, str(idle_s)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def record(row, uid: str, group: str, masks=None, rle=None) -> RolloutRecord:
    r = RolloutRecord(uid=uid, group_id=group, sample_index=0, group_size=1, policy_version=0,
                      prompt_token_ids=np.arange(4), completion_token_ids=np.arange(6),
                      sampling_logprobs=np.full(6, -1.0), completion_text="the target is dog . it is [SEG] .",
                      meta={"row": row, "dataset_index": 0})
    return r.with_masks(masks) if rle is None else dataclasses.replace(r, masks_rle=rle)


def fresh_queue(**kw) -> QueueConfig:
    tag = uuid.uuid4().hex[:8]
    return QueueConfig(rollout_stream=f"test:poison:{tag}", scored_stream=f"test:poison-scored:{tag}", **kw)


def test_a_record_whose_scoring_runs_out_of_memory_is_dead_lettered_and_the_scorer_goes_on(redis_server, tmp_path,
                                                                                          fault_row):
    """The 327-byte record of 10^10 mask pixels reaches a scorer given no mask bound (only its
    counts are checked at decode); expanding it fails under a 2 GiB address-space limit. The
    ``MemoryError`` dead-letters that record, with its reason; the scorer scores the next one."""
    fault_row["fault"] = "a record whose scoring raises (MemoryError expanding a 10^10-pixel mask)"
    root = write_refavs_fixture(tmp_path / "data")
    rows = layout.read_metadata(root)
    queue = fresh_queue(claim_idle_ms=500)
    stream = RecordStream(redis_server.client(), queue.rollout_stream, GROUP)
    stream.ensure_group()
    empty = np.zeros((10, MASK, MASK), dtype=bool)
    sent = [record(rows[0].line, rows[0].uid, "good-0", empty),
            record(rows[1].line, rows[1].uid, "poison", rle={"shape": [1, 100_000, 100_000], "counts": [10**10]}),
            record(rows[2].line, rows[2].uid, "good-1", empty)]
    assert len(encode(sent[1])) < 400
    for r in sent:
        stream.publish(r)
    proc = start_scorer(redis_server.url, queue, root, "w0", address_space=2 * 2**30, idle_s=1.5)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err[-3000:]
    stats = json.loads(out.splitlines()[-1])
    assert stats["scored"] == 2 and stats["unscorable"] == 1, stats
    dead = redis_server.client().xrange(stream.dead_stream)
    assert len(dead) == 1 and dead[0][1][b"record"] == b"poison/0" and b"MemoryError" in dead[0][1][b"reason"]
    assert redis_server.client().xlen(queue.scored_stream) == 2 and stream.pending() == 0
    fault_row.update(lost=len(sent) - stats["scored"] - len(dead), duplicated=stats["duplicates"], dropped=len(dead))


def pending_on(client, queue: QueueConfig, message_id: bytes) -> dict | None:
    entries = client.xpending_range(queue.rollout_stream, GROUP, message_id, message_id, 1)
    return entries[0] if entries else None


def test_a_record_its_scorers_die_on_is_dead_lettered_after_max_deliveries(redis_server, tmp_path, fault_row):
    """A record whose ground-truth mask is a FIFO nobody writes: every scorer that takes it hangs
    on it and is SIGKILLed there (as out of memory ends a process). Reclaimed one message at a
    time, the records delivered beside it are scored; the third death makes the next scorer
    dead-letter it with its bytes and reason, unread, and score the rest."""
    fault_row["fault"] = "a record every scorer dies on (SIGKILLed while handling it)"
    root = write_refavs_fixture(tmp_path / "data")
    rows = layout.read_metadata(root)
    trap = layout.mask_path(root, rows[1].vid, rows[1].fid, 0)
    trap.unlink()
    os.mkfifo(trap)
    queue = fresh_queue(claim_idle_ms=300, max_deliveries=3)
    client = redis_server.client()
    stream = RecordStream(client, queue.rollout_stream, GROUP)
    stream.ensure_group()
    empty = np.zeros((10, MASK, MASK), dtype=bool)
    sent = [record(rows[0].line, rows[0].uid, "good-0", empty), record(rows[1].line, rows[1].uid, "poison", empty),
            record(rows[2].line, rows[2].uid, "good-1", empty), record(rows[3].line, rows[3].uid, "good-2", empty)]
    ids = [stream.publish(r) for r in sent]
    kills, final = 0, None
    for k in range(6):
        proc = start_scorer(redis_server.url, queue, root, f"w{k}", idle_s=2.0)
        deadline = time.monotonic() + 90
        while proc.poll() is None and time.monotonic() < deadline:
            entry = pending_on(client, queue, ids[1])
            if entry and entry["consumer"] == f"w{k}".encode() and entry["time_since_delivered"] > 1500:
                os.kill(proc.pid, signal.SIGKILL)  # hung on the poison record: killed where it stands
                kills += 1
                break
            time.sleep(0.1)
        out, err = proc.communicate(timeout=60)
        if proc.returncode == 0:
            final = json.loads(out.splitlines()[-1])
            break
        assert proc.returncode == -signal.SIGKILL, err[-3000:]
    assert kills == queue.max_deliveries and final is not None
    assert final["poisoned"] == 1 and final["reclaimed"] >= 2, final
    dead = client.xrange(stream.dead_stream)
    assert len(dead) == 1 and dead[0][1][b"id"] == ids[1]
    assert dead[0][1][b"payload"] == encode(sent[1]) and b"delivered 3 times" in dead[0][1][b"reason"]
    scored = [decode(f[FIELD]).record_id for _, f in client.xrange(queue.scored_stream)]
    assert sorted(scored) == ["good-0/0", "good-1/0", "good-2/0"] and stream.pending() == 0  # once each, none left
    fault_row.update(lost=len(sent) - len(scored) - len(dead), duplicated=len(scored) - len(set(scored)),
                     dropped=len(dead))


def test_answer_parsing_takes_linear_time():
    """``parse_answer`` on 4 MB of "the target is x " (no full stop): quadratic parsing took 3 s
    for 64 KB, so 4 MB would take hours; linear parsing takes well under the timeout."""
    code = ("from aurora_rl.prompts.answer_format import parse_answer\n"
            "p = parse_answer('the target is x ' * 250_000)\n"
            "assert p.target_class is None, p.target_class\n"
            "q = parse_answer('the target is x ' * 1000 + 'the target is dog . it is [SEG] .')\n"
            "assert q.target_class.endswith('dog'), q.target_class\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
