"""Stage 2's selection of failures and its reflective answers."""

from __future__ import annotations

import numpy as np
import pytest

from aurora_rl.config.schema import DataConfig, ModelConfig, ReflectConfig, RolloutConfig, SamplingConfig
from aurora_rl.data.refavs_dataset import RefAVSDataset
from aurora_rl.model.build import MediaShape
from aurora_rl.model.checkpoint import save_policy
from aurora_rl.prompts.answer_format import CoTEntry, compose_answer, parse_answer
from learner.reflect_job import build_reflective_examples, judged, mine, mix, reflective_answer, select_failures
from learner.sft_data import SFTExample
from tests.model.tiny_policy import make_policy, tiny_model_config

GT = np.zeros((2, 4, 4), dtype=np.uint8)
GT[:, :2, :2] = 1


def pred(uid, index, text, probs, gt_class="dog", sample=0, is_null=False, row=None):
    row = index + 2 if row is None else row  # the metadata line of row ``index``
    return {"uid": uid, "row": row, "index": index, "sample": sample, "text": text, "has_seg": "[SEG]" in text,
            "mask_probs": probs.astype(np.float16), "gt_masks": GT if not is_null else np.zeros_like(GT),
            "gt_class": gt_class, "is_null": is_null}


def answer(cls):
    return compose_answer("a red dog on the left .", "the dog sounds from frame 1 .", "the reference asks for the dog .", cls)


GOOD = GT.astype(np.float32)
BAD = 1.0 - GT.astype(np.float32)


def test_only_real_failures_are_selected_one_per_row():
    preds = [
        pred("a", 0, answer("dog"), GOOD),  # right class, perfect mask: not a failure
        pred("b", 1, answer("cat"), GOOD),  # wrong class
        pred("c", 2, answer("dog"), BAD),  # right class, IoU 0
        pred("d", 3, answer("dog"), GOOD, sample=0),
        pred("d", 3, answer("cat"), GOOD, sample=1),  # d's second sample fails
        pred("e", 4, "garbage without steps", GOOD),  # no target class: wrong class
        pred("b", 1, answer("bird"), GOOD, sample=1),  # a second failure of b: not taken twice
        pred("n", 5, answer(None), np.zeros_like(GOOD), gt_class=None, is_null=True),  # null done right
        pred("m", 6, answer("dog"), np.zeros_like(GOOD), gt_class=None, is_null=True),  # false positive class
        pred("b", 7, answer("cat"), GOOD, row=9),  # the uid of row 1 on another row: a sample of its own
    ]
    chosen = select_failures([judged(p, failure_iou=0.5) for p in preds])
    assert [(p["uid"], p["row"], p.get("sample"), why) for p, why in chosen] == [
        ("b", 3, 0, "wrong class"), ("c", 4, 0, "low IoU"), ("d", 5, 1, "wrong class"), ("e", 6, 0, "wrong class"),
        ("m", 8, 0, "wrong class"), ("b", 9, 0, "wrong class"),
    ]


def test_reflective_answer_keeps_the_wrong_attempt_then_the_correction():
    wrong = answer("cat")
    corrected = answer("dog")
    text = reflective_answer(wrong, corrected, "Wait, let me reconsider.")
    assert text.startswith(wrong.removesuffix(" it is [SEG] .") + " wait , let me reconsider . step 1 :")
    assert text.count("[SEG]") == 1 and text.endswith("it is [SEG] .")
    parsed = parse_answer(text)
    assert parsed.well_formed and parsed.target_class == "dog"


def test_examples_point_at_the_failing_rows_and_mix_ratio_holds():
    mined = [pred("b", 7, answer("cat"), GOOD), pred("c", 9, answer("dog"), BAD)]
    failures = select_failures([judged(p, 0.5) for p in mined])
    corrections = {9: CoTEntry("b", answer("dog"), "dog", 9), 11: CoTEntry("c", answer("dog"), "dog", 11)}
    reflective = build_reflective_examples(failures, corrections, "wait , let me reconsider .")
    assert [(e.uid, e.dataset_index) for e in reflective] == [("b", 7), ("c", 9)]
    base = [SFTExample(f"u{i}", i, answer("dog"), "dog") for i in range(10)]
    mixed = mix(reflective, base, ratio=0.5, seed=0)
    assert len(mixed) == 4 and mixed[:2] == reflective
    assert len(mix(reflective, base, ratio=0.25, seed=0)) == 2 + 6
    assert mix([], base, 0.5, 0) == base


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_mining_samples_each_clip_but_the_left_out_ones_group_size_times(ray_node, synthetic_root, tmp_path):
    """The scenes ``mix.skip_unasked_scenes`` leaves out are not sampled at all (their failures
    would be dropped); every other clip gets ``group_size`` completions, in row order."""
    policy, tok = make_policy(seed=3)
    ckpt = save_policy(policy, tok, tiny_model_config(), MediaShape(128, 64, 64), tmp_path / "ckpt")
    data = DataConfig(root=str(synthetic_root), max_samples=6)
    cfg = ReflectConfig(stage="reflect", data=data, model=ModelConfig(path=str(ckpt)),
                        rollout=RolloutConfig(num_actors=2, sampling=SamplingConfig(group_size=2, max_new_tokens=8)))
    rows = RefAVSDataset.from_config(data, data.train_split).rows
    uids = [row.uid for row in rows]
    lines = []
    preds = mine(cfg, tmp_path, lines.append, skip={rows[1].line, rows[4].line})
    kept = [0, 2, 3, 5]
    assert [(p["index"], p["sample"]) for p in preds] == [(i, k) for i in kept for k in (0, 1)]
    assert [p["uid"] for p in preds] == [uids[i] for i in kept for _ in (0, 1)]
    assert "each of 4 training clips (2 left out)" in lines[0] and "4/4 clips" in lines[-1]
