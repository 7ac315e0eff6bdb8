"""The policy: gradients, [SEG] -> masks, save/load, merged weights."""

from __future__ import annotations

import shutil

import pytest
import torch

from aurora_rl.model.checkpoint import load_policy, merged_llm_state_dict, save_policy
from aurora_rl.model.mask_loss import mask_loss
from aurora_rl.model.sam_segmenter import NO_PROMPT_LOGIT
from tests.model.tiny_policy import SHAPE, make_inputs, make_policy, tiny_model_config


def grads_by_part(policy):
    out = {}
    for name, p in policy.named_parameters():
        if p.grad is not None and p.grad.abs().sum() > 0:
            key = "lora" if "lora_" in name else name.split(".")[0]
            if "mask_decoder" in name:
                key = "mask_decoder"
            if "modules_to_save" in name:
                key = "lm_head" if "lm_head" in name else "embed_tokens"
            out[key] = out.get(key, 0) + 1
    return out


def test_mask_loss_reaches_projector_mask_decoder_and_lora():
    policy, tok = make_policy()
    batch = make_inputs(tok)
    out = policy(batch)
    gt = torch.zeros_like(out.mask_logits)
    gt[..., 8:20, 4:12] = 1
    mask_loss(out.mask_logits, gt)[0].backward()
    parts = grads_by_part(policy)
    for part in ("projector", "mask_decoder", "lora"):
        assert part in parts, parts
    assert "lm_head" not in parts  # the mask path does not go through the LM head
    image_encoder = policy.segmenter.sam.vision_encoder
    assert all(p.grad is None for p in image_encoder.parameters())  # frozen


def test_language_loss_reaches_lora_lm_head_and_encoders():
    policy, tok = make_policy()
    out = policy(make_inputs(tok), with_masks=False)
    ce = -(out.answer_logprobs * out.answer_mask).sum() / out.answer_mask.sum()
    ce.backward()
    parts = grads_by_part(policy)
    for part in ("lora", "lm_head", "embed_tokens", "vision", "audio"):
        assert part in parts, parts
    assert "projector" not in parts and "mask_decoder" not in parts


def test_a_frozen_mask_decoder_leaves_the_mask_loss_to_the_projector_and_the_llm(tmp_path):
    """``model.sam.train_mask_decoder: false`` (the main job's setting for its pretrained tiny SAM)."""
    from aurora_rl.model.build import build_tiny_policy, trainable_summary

    policy, tok = make_policy()
    cfg = tiny_model_config()
    cfg.sam.train_mask_decoder = False
    frozen = build_tiny_policy(cfg, tok, SHAPE, seed=0)
    assert not any(p.requires_grad for p in frozen.segmenter.sam.mask_decoder.parameters())
    assert trainable_summary(frozen).get("segmenter", 0) == 0 < trainable_summary(policy)["segmenter"]
    out = frozen(make_inputs(tok))
    mask_loss(out.mask_logits, (torch.rand_like(out.mask_logits) > 0.5).float())[0].backward()
    parts = grads_by_part(frozen)
    assert "projector" in parts and "mask_decoder" not in parts, parts
    loaded, _, loaded_cfg, _ = load_policy(save_policy(frozen, tok, cfg, SHAPE, tmp_path / "ckpt"))
    assert loaded_cfg.sam.train_mask_decoder is False  # later stages keep it frozen
    assert not any(p.requires_grad for p in loaded.segmenter.sam.mask_decoder.parameters())


def test_seg_embedding_comes_from_the_last_seg_token_and_prompts_every_frame():
    policy, tok = make_policy()
    batch = make_inputs(tok, batch=2)
    batch.answer_ids[1] = batch.answer_ids[1][:5]  # cut before [SEG]
    with torch.no_grad():
        out = policy(batch)
    assert out.has_seg.tolist() == [True, False]
    assert out.mask_logits.shape == (2, 10, SHAPE.mask_size, SHAPE.mask_size)
    assert torch.all(out.mask_logits[1] == NO_PROMPT_LOGIT)  # no [SEG]: empty mask, no exception
    assert torch.all(out.seg_embedding[1] == 0)
    assert out.mask_logits[0].std() > 0
    assert out.answer_mask.sum(1).tolist() == [len(batch.answer_ids[0]), 5]


def test_training_forward_and_prompt_embeds_agree():
    """The prompt_embeds given to vLLM are exactly the training forward's prompt rows."""
    policy, tok = make_policy()
    policy.eval()  # LoRA dropout off
    batch = make_inputs(tok, batch=1, with_answer=False)
    with torch.no_grad():
        embeds = policy.prompt_embeds(batch.prompt_ids, batch.frames, batch.fbank, batch.fbank_lengths)[0]
        out = policy(batch, with_masks=False)
        base = policy.base_lm
        hidden = base.model(inputs_embeds=embeds[None]).last_hidden_state
        logits = base.get_output_embeddings()(hidden[0, -1])
    n_media = policy.vision.num_tokens + policy.audio.num_tokens
    assert embeds.shape == (len(batch.prompt_ids[0]) - 2 + n_media, base.config.hidden_size)
    torch.testing.assert_close(logits, out.first_token_logits[0], rtol=0, atol=1e-5)


def test_save_load_round_trip_is_exact(tmp_path):
    policy, tok = make_policy(seed=3)
    save_policy(policy, tok, tiny_model_config(), SHAPE, tmp_path / "ckpt")
    loaded, tok2, cfg, shape = load_policy(tmp_path / "ckpt")
    assert shape == SHAPE and cfg == tiny_model_config()
    assert tok2.get_vocab() == tok.get_vocab()
    a, b = policy.state_dict(), loaded.state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    batch = make_inputs(tok)
    policy.eval(), loaded.eval()
    with torch.no_grad():
        o1, o2 = policy(batch), loaded(batch)
    assert torch.equal(o1.answer_logprobs, o2.answer_logprobs)
    assert torch.equal(o1.mask_logits, o2.mask_logits)
    shutil.rmtree(tmp_path / "ckpt" / "tokenizer")  # the path would be taken for a hub id: named instead
    with pytest.raises(FileNotFoundError, match=f"{tmp_path / 'ckpt' / 'tokenizer'}: the checkpoint has no tokenizer"):
        load_policy(tmp_path / "ckpt")


def test_merged_weights_equal_lora_math_and_leave_training_untouched():
    policy, _ = make_policy(seed=1, lora_b_std=0.2)
    before = {k: v.clone() for k, v in policy.state_dict().items()}
    merged = merged_llm_state_dict(policy)
    after = policy.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert not any("lora" in k or "base_layer" in k or "modules_to_save" in k for k in merged)
    assert {"model.embed_tokens.weight", "lm_head.weight", "model.layers.0.self_attn.q_proj.weight"} <= merged.keys()
    layer = policy.base_lm.model.layers[0].self_attn.q_proj
    scale = layer.scaling["default"]
    expected = layer.base_layer.weight + scale * layer.lora_B["default"].weight @ layer.lora_A["default"].weight
    torch.testing.assert_close(merged["model.layers.0.self_attn.q_proj.weight"], expected)
    assert not torch.allclose(expected, layer.base_layer.weight)


def test_placeholder_tokens_inside_a_completion_stay_tokens():
    """A sampled completion may contain <video>/<audio>; only the prompt's are spliced with media."""
    policy, tok = make_policy()
    policy.eval()
    batch = make_inputs(tok, batch=1)
    answer = batch.answer_ids[0]
    batch.answer_ids[0] = answer[:3] + [policy.ids.video, policy.ids.audio] + answer[3:]
    with torch.no_grad():
        out = policy(batch, with_masks=False)
    assert int(out.answer_mask.sum()) == len(batch.answer_ids[0])
    assert torch.isfinite(out.answer_logprobs).all()


def test_seg_pass_from_prompt_embeddings_matches_the_forward():
    """The rollouts' batched [SEG] pass (ready prompt embeddings, answers of different lengths)
    gives the training forward's [SEG] embeddings, and none where an answer has no [SEG]."""
    policy, tok = make_policy(seed=2, lora_b_std=0.1)
    policy.eval()
    batch = make_inputs(tok, batch=3)
    answers = [batch.answer_ids[0], batch.answer_ids[1][:-1], batch.answer_ids[2][:4]]  # [SEG] in the first two
    batch.answer_ids = answers
    with torch.no_grad():
        expected = policy(batch, with_masks=False)
    embeds = policy.prompt_embeds(batch.prompt_ids, batch.frames, batch.fbank, batch.fbank_lengths)
    has_seg, seg = policy.seg_embeddings([embeds[0], embeds[1], embeds[2]], answers)
    assert has_seg.tolist() == expected.has_seg.tolist() == [True, True, False]
    torch.testing.assert_close(seg, expected.seg_embedding, atol=1e-5, rtol=1e-4)
    assert torch.equal(seg[2], torch.zeros_like(seg[2]))


def test_the_same_seed_builds_the_same_weights_whatever_the_global_rng():
    """Every random draw of build_tiny_policy, LoRA's A matrices included, comes from its seed."""
    from aurora_rl.data.synthetic import synthetic_words
    from aurora_rl.model.build import build_tiny_policy
    from aurora_rl.model.tokenizer import build_word_tokenizer

    tok = build_word_tokenizer(synthetic_words())
    torch.manual_seed(1)
    first = build_tiny_policy(tiny_model_config(), tok, SHAPE, seed=3).state_dict()
    torch.manual_seed(2)
    second = build_tiny_policy(tiny_model_config(), tok, SHAPE, seed=3).state_dict()
    assert any("lora_A" in k for k in first)
    assert first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)


def test_sam_segments_the_picture_inside_a_padded_frame_square():
    """Frames padded to a square (VideoLLaMA2's preparation) carry the picture's box: SAM sees the
    picture only, so its masks cover what the ground truth covers (the whole original frame)."""
    policy, tok = make_policy(seed=3)
    policy.eval()
    batch = make_inputs(tok, batch=1, seed=5)
    picture = batch.frames[:, :, :, 16:48, :].clone()  # a 64 x 32 picture ...
    padded = torch.full_like(batch.frames, 127 / 255)
    padded[:, :, :, 16:48, :] = picture  # ... centred on a 64 x 64 square of the mean colour
    seg = torch.randn(1, policy.segmenter.prompt_dim, generator=torch.Generator().manual_seed(0))
    has = torch.tensor([True])
    with torch.no_grad():
        boxed = policy.masks(padded, seg, has, frame_box=torch.tensor([[16, 0, 32, 64]]))
        alone = policy.masks(picture, seg, has)
        unboxed = policy.masks(padded, seg, has)
    assert boxed.shape == (1, 10, 32, 32)
    torch.testing.assert_close(boxed, alone)
    assert not torch.allclose(boxed, unboxed, rtol=0, atol=1e-3)  # without the box, SAM sees the grey bands too
