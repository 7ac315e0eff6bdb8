"""Bad input: refused with an error that names the item, or skipped and counted; never silent.

Data files (corrupt JPEG, truncated WAV, mask of the wrong size, CSV without a column, an empty
expression) are refused by the readers naming the file; a training loader turns them into
counted skips. Model outputs (no [SEG], two [SEG], garbage, 10x the length limit, garbage bytes
instead of a record, a NaN reward) go through the real scorer and step collector on Redis, and
every record published is accounted for: learned from, dead-lettered, or dropped and counted.
"""

from __future__ import annotations

import dataclasses
import uuid

import numpy as np
import pytest
from PIL import Image

from aurora_rl.config.schema import QueueConfig, RewardConfig
from aurora_rl.data import DataError, FailureLog, RefAVSDataset, TolerantDataset, collate_clips
from aurora_rl.data import refavs_layout as layout
from aurora_rl.prompts.answer_format import compose_answer
from aurora_rl.record_stream import RecordStream
from aurora_rl.records import RecordLimits, RolloutRecord, encode
from learner.grpo_collect import StepCollector
from rewards.ground_truth import GroundTruth
from rewards.stream_scorer import GROUP, StreamScorer, scorer_client
from tests.data.layout_fixtures import VIDS, write_refavs_fixture

MASK = 32
MAX_NEW_TOKENS = 12


# ---------------------------------------------------------------- data files
def corrupt_jpeg(root):
    path = layout.frame_path(root, VIDS[0], 3)
    path.write_bytes(path.read_bytes()[:50])
    return path, "train"


def truncated_wav(root):
    path = layout.audio_path(root, VIDS[0])
    path.write_bytes(path.read_bytes()[:-1001])
    return path, "train"


def mask_of_wrong_size(root):
    path = layout.mask_path(root, VIDS[0], 0, 5)
    Image.new("L", (20, 32)).save(path)
    return path, "train"


def csv_missing_a_column(root):
    path = layout.metadata_path(root)
    lines = path.read_text().splitlines()
    path.write_text("\n".join(",".join(line.split(",")[:4]) for line in lines) + "\n")  # no "exp"
    return path, "train"


def empty_expression(root):
    path = layout.metadata_path(root)
    lines = path.read_text().splitlines()
    lines[2] = ",".join(lines[2].split(",")[:4]) + ",  "
    path.write_text("\n".join(lines) + "\n")
    return path, "train"


DEFECTS = [corrupt_jpeg, truncated_wav, mask_of_wrong_size, csv_missing_a_column, empty_expression]


def read_every_item(root, split: str, items: int) -> tuple[list[str], list[DataError]]:
    """Every item of ``split`` (``items`` of them before the damage) through the dataset reader:
    the keys (uid@row) of those it loaded and the refusals, one per item; a metadata file the
    reader refuses refuses all its items."""
    try:
        dataset = RefAVSDataset(root, split, image_size=16, mask_size=8)
    except DataError as e:
        return [], [e] * items
    loaded, refused = [], []
    for i in range(len(dataset)):
        try:
            clip = dataset[i]
            loaded.append(f"{clip.uid}@{clip.row}")
        except DataError as e:
            refused.append(e)
    return loaded, refused


@pytest.mark.parametrize("plant", DEFECTS, ids=lambda f: f.__name__)
def test_bad_file_is_refused_naming_it(tmp_path, plant, fault_row):
    fault_row["fault"] = f"{plant.__name__.replace('_', ' ')}: refused, the error names the file"
    root = write_refavs_fixture(tmp_path / "refavs")
    items = len(RefAVSDataset(root, "train").rows)
    path, split = plant(root)
    loaded, refused = read_every_item(root, split, items)
    fault_row.update(lost=items - len(loaded) - len(refused), duplicated=len(loaded) - len(set(loaded)),
                     dropped=len(refused))
    assert split == "train" and refused
    for e in refused:
        assert e.path == str(path) and str(path) in str(e)
    assert len(set(loaded)) == len(loaded) == items - len(refused)  # every other item read, once


@pytest.mark.parametrize("plant", [corrupt_jpeg, truncated_wav, mask_of_wrong_size], ids=lambda f: f.__name__)
def test_training_loader_skips_a_bad_clip_counted_and_named(tmp_path, plant):
    root = write_refavs_fixture(tmp_path / "refavs")
    path, split = plant(root)
    dataset = TolerantDataset(RefAVSDataset(root, split, image_size=16, mask_size=8))
    log = FailureLog(max_fraction=1.0)
    log.update(collate_clips([dataset[i] for i in range(len(dataset))]))
    assert log.loaded + len(log.failures) == len(dataset)  # every item accounted for
    assert len(log.failures) >= 1 and all(str(path) in f.message for f in log.failures)


# ---------------------------------------------------------------- model outputs
@pytest.fixture(scope="module")
def truth(synthetic_root):
    return GroundTruth(synthetic_root, None, MASK)


def outputs_of_every_kind(truth, uids) -> list[RolloutRecord]:
    """Five groups of three, one kind of model output each (the group id names it)."""
    kinds = {"no_seg": "the target is dog . it is .", "two_seg": "it is [SEG] . it is [SEG] .",
             "garbage": "\ufffd\x00\x7f ]] [[SEG \ufffd", "normal": None, "too_long": None}
    records = []
    for g, (kind, text) in enumerate(kinds.items()):
        row = truth.row_of(uids[g])
        t = truth(row)
        for k in range(3):
            n = MAX_NEW_TOKENS
            if kind == "too_long" and k == 1:
                n = 10 * MAX_NEW_TOKENS
            answer = text if text is not None else compose_answer("a", "b", "c", t.target_class)
            records.append(RolloutRecord(
                uid=uids[g], group_id=f"{kind}", sample_index=k, group_size=3, policy_version=0,
                prompt_token_ids=np.arange(5), completion_token_ids=np.arange(n) % 7,
                sampling_logprobs=np.full(n, -1.5), completion_text=answer,
                meta={"dataset_index": g, "row": row}).with_masks(t.masks if "SEG]" in answer else None))
    return records


def test_every_kind_of_model_output_is_scored_or_dropped_and_counted(redis_server, synthetic_root, truth, fault_row):
    fault_row["fault"] = "model output: no [SEG], two [SEG], garbage text, 10x max length, garbage bytes, NaN reward"
    tag = uuid.uuid4().hex[:8]
    queue = QueueConfig(rollout_stream=f"test:rollouts:{tag}", scored_stream=f"test:scored:{tag}", claim_idle_ms=500)
    client = redis_server.client()
    rollouts = RecordStream(client, queue.rollout_stream, GROUP)
    rollouts.ensure_group()
    uids = [r.uid for r in layout.read_metadata(synthetic_root) if r.split == "train"][:5]
    records = outputs_of_every_kind(truth, uids)
    for r in records:
        rollouts.publish(r)
    rollouts.publish_raw(b"\x93\xff garbage bytes, not a record")
    limits = RecordLimits(queue.max_record_bytes, MAX_NEW_TOKENS, 3, truth(records[0].meta["row"]).masks.shape)
    scorer = StreamScorer(scorer_client(redis_server.url, 100), queue, RewardConfig(), truth, "w0", limits=limits)
    scorer.ensure_group()
    while scorer.step(block_ms=100):
        pass
    # every output scored but the bytes and the completion beyond the sampling budget, refused unread
    assert scorer.counts["scored"] == 14 and scorer.rejected == 2
    reasons = [f[b"reason"] for _, f in client.xrange(rollouts.dead_stream)]
    assert len(reasons) == 2 and any(b"the sampling budget is 12" in r for r in reasons)
    scored = RecordStream(client, queue.scored_stream, "learner")
    scored.publish_raw(encode(dataclasses.replace(records[3], reward=float("nan"), rewards={"iou": float("nan")})))
    collector = StepCollector(client, queue, max_lag=0, limits=limits)
    groups = collector.collect(["no_seg", "two_seg", "garbage", "normal", "too_long"], 3, 0, timeout_s=2)
    by_id = {g[0].group_id: g for g in groups}
    assert sorted(by_id) == ["garbage", "no_seg", "normal", "two_seg"]
    assert [r.rewards["format"] for r in by_id["no_seg"]] == [0.0] * 3
    assert [r.rewards["format"] for r in by_id["two_seg"]] == [1.0] * 3
    assert [r.rewards["format"] + r.rewards["cls"] for r in by_id["garbage"]] == [0.0] * 3
    assert all(r.rewards["cls"] == 2.0 for r in by_id["normal"])
    assert collector.counters["incomplete_groups"] == 1 and collector.counters["rejected"] == 1  # the NaN reward
    dead = client.xrange(collector.stream.dead_stream)
    assert len(dead) == 1 and b"finite" in dead[0][1][b"reason"]
    collected = [r.record_id for g in groups for r in g]
    too_long_partial = 2  # the too-long group's other two records: counted with its incomplete group
    assert len(collected) + too_long_partial == scorer.counts["scored"]
    collector.ack_step()
    assert scored.pending() == 0 and rollouts.pending() == 0  # nothing left unaccounted in Redis
    sent = len(records) + 2  # and the garbage bytes, the NaN-reward record
    dead_lettered = scorer.rejected + collector.counters["rejected"]
    fault_row.update(lost=sent - len(collected) - dead_lettered - too_long_partial,
                     duplicated=len(collected) - len(set(collected)), dropped=sent - len(collected))


def test_the_collector_drops_records_that_do_not_fit_the_step_and_never_raises(redis_server, truth, synthetic_root,
                                                                             fault_row):
    """Scored records of the step's group that its sampling cannot have made: a sample index
    beyond the group (G=3), another group size, a version the learner has not published. Each is
    dropped and counted (``misfit_dropped``); the genuine records are collected."""
    fault_row["fault"] = "scored records that do not fit the step (sample index 5 of 3, group size 6, version 9)"
    tag = uuid.uuid4().hex[:8]
    queue = QueueConfig(rollout_stream=f"test:rollouts:{tag}", scored_stream=f"test:scored:{tag}")
    client = redis_server.client()
    scored = RecordStream(client, queue.scored_stream, "learner")
    uid = [r.uid for r in layout.read_metadata(synthetic_root) if r.split == "train"][0]

    def scored_record(k: int, size: int = 3, version: int = 1) -> RolloutRecord:
        return RolloutRecord(uid=uid, group_id="g", sample_index=k, group_size=size, policy_version=version,
                             prompt_token_ids=np.arange(3), completion_token_ids=np.arange(4),
                             sampling_logprobs=np.full(4, -1.0), completion_text="it is [SEG] .",
                             rewards={"format": 1.0}, reward=1.0, meta={"dataset_index": 0, "row": 0})

    misfits = [scored_record(5, size=6), scored_record(0, size=6), scored_record(1, version=9)]
    for r in misfits + [scored_record(k) for k in range(3)]:
        scored.publish(r)
    collector = StepCollector(client, queue, max_lag=1)
    (group,) = collector.collect(["g"], 3, 1, timeout_s=2)
    assert [(r.sample_index, r.group_size, r.policy_version) for r in group] == [(0, 3, 1), (1, 3, 1), (2, 3, 1)]
    assert collector.counters["misfit_dropped"] == len(misfits) and collector.counters["duplicates_dropped"] == 0
    collector.ack_step()
    assert scored.pending() == 0
    fault_row.update(lost=len(misfits) + 3 - len(group) - collector.counters["misfit_dropped"],
                     duplicated=len(group) - len({r.record_id for r in group}),
                     dropped=collector.counters["misfit_dropped"])
