"""Tiny SAM pretraining: point prompts, learning, the saved folder, and a policy built on it."""

from __future__ import annotations

import json

import pytest
import torch

from aurora_rl.model.sam_checkpoint import load_sam
from aurora_rl.model.sam_pretrain import load_object_frames, point_prompt_iou, pretrain_tiny_sam, sample_points
from aurora_rl.model.sam_segmenter import SamSegmenter


def test_points_fall_inside_and_outside_their_mask():
    masks = torch.zeros(3, 16, 16, dtype=torch.bool)
    masks[0, 2:5, 3:6] = True
    masks[1, 10:, 10:] = True
    masks[2, 7, 9] = True  # one pixel: the positive point must be that pixel's centre
    g = torch.Generator().manual_seed(0)
    for _ in range(20):
        points, labels = sample_points(masks, g, negative_rate=0.5)
        assert points.shape == (3, 1, 2, 2) and labels.shape == (3, 1, 2)
        for i in range(3):
            x, y = points[i, 0, 0]
            assert labels[i, 0, 0] == 1 and masks[i, int(y), int(x)]
            if labels[i, 0, 1] == 0:
                x, y = points[i, 0, 1]
                assert not masks[i, int(y), int(x)]
            else:
                assert labels[i, 0, 1] == -1  # no negative point drawn: SAM's padding label
        assert points[2, 0, 0].tolist() == [9.5, 7.5]
    _, labels = sample_points(masks, g, negative_rate=0.0)
    assert (labels[:, 0, 1] == -1).all()


def test_object_frames_skip_null_rows_and_repeated_objects(synthetic_root):
    data = load_object_frames(synthetic_root, "val", image_size=64)
    assert data.frames.dtype == torch.uint8 and data.frames.shape[1:] == (3, 64, 64)
    assert data.masks.shape == (len(data), 64, 64) and data.masks.flatten(1).any(1).all()
    facts = [json.loads(line) for line in (synthetic_root / "scene_facts.jsonl").read_text().splitlines()]
    objects = {(f["vid"], f["target_index"]) for f in facts if f["split"] == "val" and f["target_class"]}
    assert len(objects) * 5 <= len(data) <= len(objects) * 10  # each object once, its non-empty frames


@pytest.mark.timeout(600)
def test_pretraining_learns_to_segment_and_saves_a_loadable_sam(synthetic_root, tmp_path):
    out = tmp_path / "tiny-sam"
    summary = pretrain_tiny_sam(synthetic_root, out, steps=80, batch=16, log_every=40)
    assert summary["val_point_iou_after"] > summary["val_point_iou_before"] + 0.2
    assert json.loads((out / "pretraining.json").read_text()) == summary
    sam = load_sam(out, 64)  # the folder is what model.sam.path takes
    segmenter = SamSegmenter(sam, cache_size=0)
    val = load_object_frames(synthetic_root, "val", image_size=64)
    assert point_prompt_iou(segmenter, val) == pytest.approx(summary["val_point_iou_after"], abs=1e-4)


def test_a_tiny_policy_takes_the_pretrained_sam(synthetic_root, tmp_path):
    from aurora_rl.data.synthetic import synthetic_words
    from aurora_rl.model.build import MediaShape, build_tiny_policy
    from aurora_rl.model.tokenizer import build_word_tokenizer
    from tests.model.tiny_policy import tiny_model_config

    out = tmp_path / "tiny-sam"
    pretrain_tiny_sam(synthetic_root, out, steps=2, batch=4, max_clips=4)
    cfg = tiny_model_config()
    cfg.sam.path = str(out)
    policy = build_tiny_policy(cfg, build_word_tokenizer(synthetic_words()), MediaShape(mask_size=64, image_size=64))
    saved = load_sam(out, 64).state_dict()
    for name, tensor in policy.segmenter.sam.state_dict().items():
        assert torch.equal(tensor, saved[name]), name
    assert not any(p.requires_grad for p in policy.segmenter.sam.vision_encoder.parameters())  # frozen, as AURORA
