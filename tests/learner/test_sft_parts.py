"""Pure parts of the SFT stages: the loss, the lr schedule, the data order."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from aurora_rl.config.schema import SFTLossConfig
from aurora_rl.model.policy import PolicyOutput
from learner.lr_schedule import lr_multiplier
from learner.sft_data import SFTBatcher, SFTExample
from aurora_rl.model.sft_loss import sft_loss

ROOT = Path(__file__).resolve().parents[2]


def output(logprobs, mask, has_seg, seg_emb, mask_logits):
    b = len(has_seg)
    return PolicyOutput(torch.tensor(logprobs), torch.tensor(mask), torch.tensor(has_seg), torch.zeros(b, 4),
                        torch.tensor(seg_emb), torch.tensor(mask_logits), torch.zeros(b, 3))


def test_sft_loss_hand_computed():
    out = output(
        logprobs=[[-1.0, -2.0, 0.0], [-3.0, 0.0, 0.0]], mask=[[True, True, False], [True, False, False]],
        has_seg=[True, False], seg_emb=[[1.0, 2.0], [0.0, 0.0]],
        mask_logits=[[[[0.0, 0.0]]], [[[0.0, 0.0]]]],  # [B=2, T=1, 1, 2]: probability 0.5 everywhere
    )
    gt = torch.tensor([[[[1.0, 0.0]]], [[[0.0, 0.0]]]])
    valid = torch.ones(2, 1, dtype=torch.bool)
    teacher = torch.tensor([[0.0, 2.0], [5.0, 5.0]])
    w = SFTLossConfig(ce=1.0, bce=2.0, dice=0.5, distill=3.0)
    total, parts = sft_loss(out, gt, valid, w, teacher, torch.tensor([True, True]))
    assert parts["ce"] == pytest.approx((1 + 2 + 3) / 3)
    assert parts["bce"] == pytest.approx(math.log(2))
    dice_1 = 1 - (2 * 0.5 + 1) / (1.0 + 1 + 1)  # prob sum 1.0, gt sum 1
    dice_2 = 1 - (0 + 1) / (1.0 + 0 + 1)
    assert parts["dice"] == pytest.approx((dice_1 + dice_2) / 2)
    assert parts["distill"] == pytest.approx(((1 - 0) ** 2 + 0) / 2)  # only the sample with [SEG] in both
    expected = 1.0 * parts["ce"] + 2.0 * parts["bce"] + 0.5 * parts["dice"] + 3.0 * parts["distill"]
    assert float(total) == pytest.approx(expected) and parts["total"] == pytest.approx(expected)


def test_distill_weight_zero_turns_distillation_off():
    out = output([[-1.0]], [[True]], [True], [[1.0, 1.0]], [[[[0.0]]]])
    _, parts = sft_loss(out, torch.zeros(1, 1, 1, 1), torch.ones(1, 1, dtype=torch.bool),
                        SFTLossConfig(distill=0.0), torch.zeros(1, 2), torch.tensor([True]))
    assert parts["distill"] == 0.0


@pytest.mark.parametrize("schedule, step, expected", [
    ("constant", 5, 1.0), ("linear", 5, 0.5), ("cosine", 5, 0.5), ("cosine", 10, 0.0), ("linear", 0, 1.0),
])
def test_lr_schedule(schedule, step, expected):
    assert lr_multiplier(step, 10, 0, schedule) == pytest.approx(expected)


def test_lr_warmup_is_linear():
    assert [lr_multiplier(s, 100, 4, "cosine") for s in range(4)] == [0.25, 0.5, 0.75, 1.0]


def test_every_example_once_per_epoch_across_ranks():
    examples = [SFTExample(f"u{i}", i, "a", None) for i in range(23)]
    seen = []
    for rank in range(2):
        b = SFTBatcher(examples, None, None, batch_size=3, world_size=2, rank=rank, seed=7)
        assert b.steps_per_epoch == 3
        for step in range(b.steps_per_epoch):
            seen += [e.uid for e in b.rows(epoch=1, step=step)]
    assert len(seen) == len(set(seen)) == 18  # 3 steps x 2 ranks x 3; the 5 left over wait for another epoch
    again = SFTBatcher(examples, None, None, 3, 2, 0, seed=7)
    assert [e.uid for e in again.rows(1, 2)] == [e.uid for e in SFTBatcher(examples, None, None, 3, 2, 0, 7).rows(1, 2)]
    assert not np.array_equal(again.order(0), again.order(1))


def test_pick_mask_frames_gathers_the_chosen_frames():
    from aurora_rl.model.mask_loss import pick_mask_frames

    gt = torch.arange(2 * 10 * 2 * 2).reshape(2, 10, 2, 2)
    valid = torch.ones(2, 10, dtype=torch.bool)
    valid[1, 3] = False
    frames, g, v = pick_mask_frames(gt, valid, 3, np.random.default_rng(0))
    assert frames.shape == (2, 3) and g.shape == (2, 3, 2, 2) and v.shape == (2, 3)
    for b in range(2):
        assert len(set(frames[b].tolist())) == 3 and frames[b].tolist() == sorted(frames[b].tolist())
        assert torch.equal(g[b], gt[b, frames[b]]) and torch.equal(v[b], valid[b, frames[b]])
    assert pick_mask_frames(gt, valid, None, np.random.default_rng(0))[0] is None
    assert pick_mask_frames(gt, valid, 10, np.random.default_rng(0))[1] is gt


def test_local_paths_become_absolute_for_the_train_workers(tmp_path, monkeypatch):
    from aurora_rl.config import load_config
    from learner.sft_job import with_absolute_paths

    monkeypatch.chdir(tmp_path)
    cfg = load_config(ROOT / "configs/tiny/sft.yaml", ["data.root=data", "model.sam.path=sams/tiny",
                                                       "model.path=ckpt", "teacher_path=../teacher"])
    fixed = with_absolute_paths(cfg)
    assert fixed.data.root == str(tmp_path / "data")
    assert fixed.model.sam.path == str(tmp_path / "sams" / "tiny")
    assert fixed.model.path == str(tmp_path / "ckpt")
    assert fixed.teacher_path == str(tmp_path.parent / "teacher")
    assert fixed.cot.path is None  # unset paths stay unset
    assert fixed.trainer == cfg.trainer and cfg.model.sam.path == "sams/tiny"  # the rest as given; cfg untouched
