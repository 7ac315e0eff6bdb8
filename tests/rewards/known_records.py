"""Rollout records whose rewards are known by construction.

Sample 0 of a group is a perfect answer with the true masks (format 1, iou 1, class 2), sample 1
names a wrong class with the true masks (1, 1, 1), sample 2 is garbage without [SEG] (0, share of
empty ground-truth frames, 0).
"""

from __future__ import annotations

import numpy as np

from aurora_rl.prompts.answer_format import compose_answer
from aurora_rl.records import RolloutRecord
from rewards.ground_truth import GroundTruth


def make_records(truth: GroundTruth, uids: list[str], count: int) -> tuple[list[RolloutRecord], dict]:
    """``count`` records over ``uids`` (3 per group) and their expected rewards by record id."""
    records, expected = [], {}
    for i in range(count):
        uid, k = uids[(i // 3) % len(uids)], i % 3
        row = truth.row_of(uid)
        t = truth(row)
        if k == 0:
            text, masks, want = compose_answer("a", "b", "c", t.target_class), t.masks, {"format": 1, "iou": 1, "cls": 2}
        elif k == 1:
            text, masks, want = compose_answer("a", "b", "c", "zebra"), t.masks, {"format": 1, "iou": 1, "cls": 1}
        else:
            empty_frames = float(np.mean(~t.masks.any(axis=(1, 2))))
            text, masks, want = "??? !!", None, {"format": 0, "iou": empty_frames, "cls": 0}
        r = RolloutRecord(
            uid=uid, group_id=f"g{i // 3}", sample_index=k, group_size=3, policy_version=0,
            prompt_token_ids=np.arange(4), completion_token_ids=np.arange(3), sampling_logprobs=np.zeros(3),
            completion_text=text, meta={"row": row},
        ).with_masks(None if masks is None else masks.astype(bool))
        records.append(r)
        expected[r.record_id] = want
    return records, expected
