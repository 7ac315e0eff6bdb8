"""SamSegmenter and SegProjector on a tiny random SAM: preprocessing, cache, decoding, gradients."""

from __future__ import annotations

import pytest
import torch

from aurora_rl.model.sam_checkpoint import build_tiny_sam
from aurora_rl.model.sam_segmenter import NO_PROMPT_LOGIT, PIXEL_MEAN, PIXEL_STD, SamSegmenter, resized_shape
from aurora_rl.model.seg_projector import SegProjector


@pytest.fixture
def segmenter():
    return SamSegmenter(build_tiny_sam(input_size=64, seed=0, window_size=2, prompt_dim=64), cache_size=2)


def count_encoder_calls(segmenter):
    calls = []
    segmenter.sam.vision_encoder.register_forward_hook(lambda *args: calls.append(1))
    return calls


def test_preprocess_resizes_the_long_side_normalises_and_pads(segmenter):
    color = torch.tensor([0.2, 0.5, 0.9])
    frames = color.view(1, 3, 1, 1).expand(2, 3, 30, 80)  # landscape: 80 -> 64, 30 -> 24
    pixels = segmenter.preprocess(frames)
    assert pixels.shape == (2, 3, 64, 64) and resized_shape(30, 80, 64) == (24, 64)
    expected = (color * 255 - torch.tensor(PIXEL_MEAN)) / torch.tensor(PIXEL_STD)
    torch.testing.assert_close(pixels[:, :, :24, :], expected.view(1, 3, 1, 1).expand(2, 3, 24, 64))
    assert (pixels[:, :, 24:, :] == 0).all()


def test_image_encoder_is_frozen_and_stays_in_eval_mode(segmenter):
    segmenter.train()
    assert not segmenter.sam.vision_encoder.training and segmenter.sam.mask_decoder.training
    assert not any(p.requires_grad for p in segmenter.sam.vision_encoder.parameters())
    assert not any(p.requires_grad for p in segmenter.sam.prompt_encoder.parameters())
    assert all(p.requires_grad for p in segmenter.sam.mask_decoder.parameters())


def test_cache_hit_avoids_recomputation(segmenter):
    calls = count_encoder_calls(segmenter)
    clip_a, clip_b, clip_c = (torch.rand(3, 3, 40, 40) for _ in range(3))
    first = segmenter.encode(clip_a, cache_key="vid_a")
    assert first.shape == (3, 64, 4, 4) and len(calls) == 1
    assert torch.equal(segmenter.encode(clip_a, cache_key="vid_a"), first) and len(calls) == 1
    segmenter.encode(clip_b, cache_key="vid_b")
    segmenter.encode(clip_a, cache_key="vid_a")  # a hit that makes vid_b the least recently used
    assert len(calls) == 2
    segmenter.encode(clip_c, cache_key="vid_c")  # cache_size 2: evicts vid_b
    segmenter.encode(clip_b, cache_key="vid_b")
    segmenter.encode(clip_a)  # no key: always computed
    assert len(calls) == 5
    assert not first.requires_grad
    segmenter.float()  # moving or casting the model drops embeddings computed on the old device/dtype
    segmenter.encode(clip_a, cache_key="vid_a")
    assert len(calls) == 6


def test_unfrozen_encoder_gets_gradients_and_is_never_cached():
    segmenter = SamSegmenter(build_tiny_sam(input_size=64, window_size=2, prompt_dim=64), freeze_image_encoder=False)
    calls = count_encoder_calls(segmenter)
    frames = torch.rand(2, 3, 32, 32)
    segmenter.encode(frames, cache_key="vid")
    embeddings = segmenter.encode(frames, cache_key="vid")
    assert len(calls) == 2
    segmenter.decode(embeddings, torch.randn(1, 64), (32, 32)).sum().backward()
    assert segmenter.sam.vision_encoder.patch_embed.projection.weight.grad.abs().sum() > 0


def test_gradients_reach_projector_and_mask_decoder_but_not_the_image_encoder(segmenter):
    projector = SegProjector(hidden_size=48, prompt_dim=segmenter.prompt_dim)
    frames, target = torch.rand(4, 3, 48, 64), (torch.rand(4, 48, 64) > 0.5).float()
    seg_hidden = torch.randn(1, 48, requires_grad=True)
    logits = segmenter.decode(segmenter.encode(frames, cache_key="clip"), projector(seg_hidden), (48, 64))
    assert logits.shape == (4, 48, 64) and logits.dtype == torch.float32
    torch.nn.functional.binary_cross_entropy_with_logits(logits, target).backward()
    assert seg_hidden.grad.abs().sum() > 0
    assert all(p.grad.abs().sum() > 0 for p in projector.parameters())
    decoder = segmenter.sam.mask_decoder
    assert decoder.mask_tokens.weight.grad.abs().sum() > 0
    assert decoder.transformer.layers[0].cross_attn_token_to_image.q_proj.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in segmenter.sam.vision_encoder.parameters())


def test_one_prompt_segments_every_frame_and_the_prompt_matters(segmenter):
    frames = torch.rand(3, 3, 32, 32)
    frames[1] = frames[0]
    embeddings = segmenter.encode(frames)
    prompt = torch.randn(1, 64)
    masks = segmenter.decode(embeddings, prompt, (32, 32))
    torch.testing.assert_close(masks[1], masks[0])  # same frame, same mask
    assert not torch.allclose(masks[2], masks[0])  # another frame, another mask
    assert torch.equal(segmenter.decode(embeddings, prompt[None], (32, 32)), masks)
    assert not torch.allclose(segmenter.decode(embeddings, torch.randn(1, 64), (32, 32)), masks)


def test_several_prompts_in_one_pass_equal_one_at_a_time(segmenter):
    embeddings = segmenter.encode(torch.rand(2, 3, 24, 40))
    prompts = torch.randn(3, 2, 64)  # 3 prompts of 2 tokens each
    batched = segmenter.decode_prompts(embeddings, prompts, (24, 40))
    assert batched.shape == (3, 2, 24, 40)
    for p in range(3):
        torch.testing.assert_close(batched[p], segmenter.decode(embeddings, prompts[p], (24, 40)), atol=1e-5, rtol=1e-5)


def test_missing_prompt_gives_an_empty_mask(segmenter):
    embeddings = segmenter.encode(torch.rand(5, 3, 20, 30))
    logits = segmenter.decode(embeddings, None, (20, 30))
    assert logits.shape == (5, 20, 30)
    assert (logits == NO_PROMPT_LOGIT).all() and (logits.sigmoid() == 0).all()


def test_prompt_width_mismatch_is_named(segmenter):
    embeddings = segmenter.encode(torch.rand(1, 3, 16, 16))
    with pytest.raises(ValueError, match="prompt_dim 64"):
        segmenter.decode(embeddings, torch.randn(1, 256), (16, 16))
    with pytest.raises(ValueError, match="decode_prompts"):
        segmenter.decode(embeddings, torch.randn(2, 1, 64), (16, 16))


def test_projector_is_linear_relu_linear_to_the_prompt_width(segmenter):
    projector = SegProjector(hidden_size=32, prompt_dim=segmenter.prompt_dim)
    hidden = torch.randn(5, 32)
    out = projector(hidden)
    assert out.shape == (5, 64)
    fc1, fc2 = projector.fc1, projector.fc2
    manual = torch.relu(hidden @ fc1.weight.T + fc1.bias) @ fc2.weight.T + fc2.bias
    torch.testing.assert_close(out, manual)
    assert SegProjector(hidden_size=32)(hidden).shape == (5, 256)  # every released SAM's width


def test_bfloat16_model_decodes_fp32_prompts_to_fp32_logits(segmenter):
    segmenter.to(torch.bfloat16)
    projector = SegProjector(hidden_size=32, prompt_dim=segmenter.prompt_dim)
    embeddings = segmenter.encode(torch.rand(2, 3, 32, 48), cache_key="clip")
    assert embeddings.dtype == torch.bfloat16
    logits = segmenter.decode(embeddings, projector(torch.randn(1, 32)), (32, 48))
    assert logits.dtype == torch.float32 and logits.isfinite().all()
    logits.mean().backward()
    assert projector.fc2.weight.grad.abs().sum() > 0
