"""Blind rows of the SFT stages (`trainer.blind_video_fraction`): video tokens blanked, no CE on step 1."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from aurora_rl.config.schema import SFTLossConfig
from aurora_rl.data.synthetic import synthetic_words
from aurora_rl.model.tokenizer import build_word_tokenizer
from aurora_rl.prompts.answer_format import step1_spans
from learner.sft_data import SFTBatcher, SFTExample
from aurora_rl.model.sft_loss import sft_loss
from tests.learner.test_sft_parts import output

COT = ("step 1 : a red drum on the left , a blue bell on the right . step 2 : the bell sounds from frame 2 . "
       "step 3 : the reference asks for the drum , which is the drum on the left . "
       "step 4 : the target is drum . it is [SEG] .")


def test_step1_spans_cover_every_first_step_up_to_the_next_marker():
    reflective = COT.replace(" it is [SEG] .", " wait , let me reconsider . ") + COT
    spans = step1_spans(reflective)
    assert len(spans) == 2
    for a, b in spans:
        assert reflective[a:b] == "step 1 : a red drum on the left , a blue bell on the right . "
    assert step1_spans("it is drum [SEG] .") == []


@pytest.fixture(scope="module")
def tokenizer():
    return build_word_tokenizer(synthetic_words())


def test_blind_rows_drop_only_step_1_from_the_loss(tokenizer):
    rows = [SFTExample("u0", 0, COT, "drum"), SFTExample("u1", 1, "it is drum [SEG] .", "drum")]
    batcher = SFTBatcher(rows, None, tokenizer, 2, 1, 0, seed=0, blind_video_fraction=1.0)
    blind, learned = batcher.learned_tokens(rows, np.random.default_rng(0))
    assert blind == [True, False]  # a direct answer has no step 1 to read the scene from
    words = COT.split()
    assert len(learned[0]) == len(words) + 1 and learned[0][-1]  # one per word, + eos
    step2 = words.index("step", 1)
    assert not any(learned[0][:step2]) and all(learned[0][step2:])
    assert all(learned[1])


def test_the_fraction_draws_about_that_share_of_rows(tokenizer):
    rows = [SFTExample(f"u{i}", i, COT, "drum") for i in range(400)]
    batcher = SFTBatcher(rows, None, tokenizer, 2, 1, 0, seed=0, blind_video_fraction=0.3)
    blind, _ = batcher.learned_tokens(rows, np.random.default_rng(1))
    assert 0.22 < sum(blind) / len(blind) < 0.38
    assert SFTBatcher(rows, None, tokenizer, 2, 1, 0, seed=0).learned_tokens(rows, np.random.default_rng(1))[0] == \
        [False] * 400


def test_ce_mask_leaves_the_masked_tokens_out_of_the_mean():
    out = output(logprobs=[[-1.0, -2.0, -4.0]], mask=[[True, True, True]], has_seg=[False], seg_emb=[[0.0, 0.0]],
                 mask_logits=[[[[0.0]]]])
    args = (torch.zeros(1, 1, 1, 1), torch.ones(1, 1, dtype=torch.bool), SFTLossConfig(distill=0.0))
    assert sft_loss(out, *args)[1]["ce"] == pytest.approx(7 / 3)
    assert sft_loss(out, *args, ce_mask=torch.tensor([[False, True, True]]))[1]["ce"] == pytest.approx(3.0)


def test_a_blank_row_reads_no_frames_but_still_segments_them():
    from tests.model.tiny_policy import make_inputs, make_policy

    policy, tok = make_policy()
    policy.eval()
    inputs = make_inputs(tok, batch=2)
    inputs.blank_video = torch.tensor([True, False])
    inputs.clip_keys = None  # no SAM embedding cache: the new frames are embedded again
    with torch.no_grad():
        before = policy(inputs)
        inputs.frames = inputs.frames.flip(-1).clone()  # other frames, same audio and text
        after = policy(inputs)
    assert torch.allclose(before.answer_logprobs[0], after.answer_logprobs[0])  # the blank row: text unchanged
    assert not torch.allclose(before.answer_logprobs[1], after.answer_logprobs[1])  # the seeing row reads them
    assert not torch.allclose(before.mask_logits[0], after.mask_logits[0])  # SAM still segments the new frames


def test_an_all_blind_batch_still_gives_the_vision_encoder_a_gradient():
    """Data-parallel ranks reduce the same gradients: a rank whose rows are all blind must too."""
    from tests.model.tiny_policy import make_inputs, make_policy

    policy, tok = make_policy()
    inputs = make_inputs(tok, batch=2)
    inputs.blank_video = torch.tensor([True, True])
    policy(inputs).answer_logprobs.sum().backward()
    grads = [p.grad for p in policy.vision.parameters() if p.requires_grad]
    assert grads and all(g is not None and not g.any() for g in grads)
