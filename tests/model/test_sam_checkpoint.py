"""SAM loading: Meta .pth conversion against an independent forward, HF folders, input-size refitting."""

from __future__ import annotations

import pytest
import torch
from transformers import SamModel

from aurora_rl.model.sam_checkpoint import (
    build_tiny_sam, fit_to_input_size, load_sam, meta_sam_config, meta_to_hf_state_dict, resize_pos_embed,
    resize_rel_pos,
)
from aurora_rl.model.sam_segmenter import SamSegmenter
from tests.model import sam_reference as ref

LAYOUT = dict(heads=2, window=3, global_blocks=(1,))  # what random_meta_state_dict writes by default


@pytest.fixture(scope="module")
def meta_checkpoint(tmp_path_factory):
    """A tiny random checkpoint in segment-anything's format: 128 px, 8x8 grid, windows of 3, layer 1 global."""
    state_dict = ref.random_meta_state_dict(seed=0)
    path = tmp_path_factory.mktemp("meta") / "sam_tiny.pth"
    torch.save(state_dict, path)
    return path, state_dict


def test_vit_h_layout_is_read_from_shapes_and_refitted_to_224():
    """sam_vit_h_4b8939.pth's layout, as meta-device tensors (shapes only, nothing allocated)."""
    meta = ref.random_meta_state_dict(
        shapes_only=True, image_size=1024, embed=1280, depth=32, heads=16, window=14, global_blocks=(7, 15, 23, 31),
        prompt_dim=256, decoder_mlp=2048, iou_hidden=256,
    )
    config = meta_sam_config(meta)
    vision = config.vision_config
    assert (vision.hidden_size, vision.num_hidden_layers, vision.num_attention_heads) == (1280, 32, 16)
    assert vision.mlp_dim == 5120
    assert (vision.image_size, vision.window_size, list(vision.global_attn_indexes)) == (1024, 14, [7, 15, 23, 31])
    state_dict, config = fit_to_input_size(meta_to_hf_state_dict(meta), config, 224)
    with torch.device("meta"):
        expected = SamModel(config).state_dict()
    assert set(state_dict) == set(expected)
    assert {k: tuple(v.shape) for k, v in state_dict.items()} == {k: tuple(v.shape) for k, v in expected.items()}
    assert state_dict["vision_encoder.pos_embed"].shape == (1, 14, 14, 1280)
    assert state_dict["vision_encoder.layers.7.attn.rel_pos_h"].shape == (27, 80)


def test_meta_layout_is_read_from_shapes(meta_checkpoint):
    _, state_dict = meta_checkpoint
    config = meta_sam_config(state_dict)
    vision, decoder = config.vision_config, config.mask_decoder_config
    assert (vision.hidden_size, vision.num_hidden_layers, vision.num_attention_heads) == (64, 3, 2)
    assert (vision.image_size, vision.patch_size, vision.window_size) == (128, 16, 3)
    assert list(vision.global_attn_indexes) == [1] and vision.mlp_dim == 256
    assert config.prompt_encoder_config.hidden_size == 64 and decoder.hidden_size == 64
    assert (decoder.num_hidden_layers, decoder.mlp_dim, decoder.iou_head_hidden_dim) == (2, 96, 48)


@pytest.mark.parametrize("input_size", [128, 96, 160])  # the checkpoint's own size, smaller, larger
def test_meta_checkpoint_matches_reference_forward(meta_checkpoint, input_size):
    path, sd = meta_checkpoint
    segmenter = SamSegmenter(load_sam(path, input_size))
    torch.manual_seed(1)
    # Frames larger than every input size: the resize is a downscale (antialiased, as segment-anything).
    frames, prompt, out_size = torch.rand(2, 3, 120, 200), torch.randn(1, 64), (120, 200)

    pixels = segmenter.preprocess(frames)
    torch.testing.assert_close(pixels, ref.preprocess(frames, input_size), atol=1e-4, rtol=1e-4)
    embeddings = segmenter.encode(frames)
    expected_emb = ref.image_encoder(sd, ref.preprocess(frames, input_size), **LAYOUT)
    assert embeddings.shape == (2, 64, input_size // 16, input_size // 16)
    torch.testing.assert_close(embeddings, expected_emb, atol=2e-4, rtol=1e-4)

    masks = segmenter.decode(embeddings, prompt, out_size)
    dense = sd["prompt_encoder.no_mask_embed.weight"].view(1, -1, 1, 1)
    low_res, _ = ref.mask_decoder(sd, expected_emb, prompt.expand(2, 1, 64), dense, multimask=False)
    expected = ref.postprocess(low_res, input_size, out_size)[:, 0]
    assert masks.shape == (2, *out_size)
    assert expected.std() > 0.1  # a check that could not pass on constant maps
    torch.testing.assert_close(masks, expected, atol=2e-4, rtol=1e-4)


def test_meta_prompt_encoder_and_multimask_heads_match_reference(meta_checkpoint):
    """The keys decode() does not use (point / mask prompts, the 3 extra heads, IoU head) convert too."""
    path, sd = meta_checkpoint
    sam = load_sam(path, 128)
    torch.manual_seed(2)
    emb = torch.randn(2, 64, 8, 8)
    points, labels = torch.rand(2, 1, 2, 2) * 128, torch.tensor([[[1, 0]], [[0, 1]]])
    mask_in = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        out = sam(image_embeddings=emb, input_points=points, input_labels=labels, input_masks=mask_in,
                  multimask_output=True)
    sparse = ref.embed_points(sd, points[:, 0], labels[:, 0], 128)
    masks, iou = ref.mask_decoder(sd, emb, sparse, ref.embed_mask(sd, mask_in), multimask=True)
    torch.testing.assert_close(out.pred_masks[:, 0], masks, atol=2e-4, rtol=1e-4)
    torch.testing.assert_close(out.iou_scores[:, 0], iou, atol=2e-4, rtol=1e-4)


def test_meta_checkpoint_and_its_hf_conversion_give_the_same_masks(meta_checkpoint, tmp_path):
    path, _ = meta_checkpoint
    load_sam(path).save_pretrained(tmp_path)
    torch.manual_seed(3)
    frames, prompt = torch.rand(3, 3, 32, 32), torch.randn(1, 64)
    for size in (128, 96):
        from_meta, from_hf = SamSegmenter(load_sam(path, size)), SamSegmenter(load_sam(tmp_path, size))
        torch.testing.assert_close(from_hf.decode(from_hf.encode(frames), prompt, (32, 32)),
                                   from_meta.decode(from_meta.encode(frames), prompt, (32, 32)), atol=0, rtol=0)


def test_hf_folder_round_trip(tmp_path):
    sam = build_tiny_sam(input_size=64, seed=5, hidden_size=32, window_size=2, prompt_dim=64)
    sam.save_pretrained(tmp_path)
    original, loaded = SamSegmenter(sam), SamSegmenter(load_sam(tmp_path))
    assert loaded.input_size == 64 and loaded.prompt_dim == 64
    torch.manual_seed(4)
    frames, prompt = torch.rand(2, 3, 48, 64), torch.randn(1, 64)
    expected = original.decode(original.encode(frames), prompt, (48, 64))
    assert torch.equal(loaded.decode(loaded.encode(frames), prompt, (48, 64)), expected)
    # The same folder at another input size: position tables refitted, masks at the asked size.
    resized = SamSegmenter(load_sam(tmp_path, 96))
    assert resized.sam.vision_encoder.pos_embed.shape == (1, 6, 6, 32)
    assert resized.decode(resized.encode(frames), prompt, (48, 64)).shape == (2, 48, 64)


def test_fitting_to_the_same_size_is_the_identity(meta_checkpoint):
    path, _ = meta_checkpoint
    sam = load_sam(path)
    state_dict = sam.state_dict()
    fitted, config = fit_to_input_size(state_dict, sam.config, 128)
    assert all(fitted[k] is state_dict[k] for k in state_dict)
    assert config.vision_config.image_size == 128
    table = torch.randn(15, 8)
    assert torch.equal(resize_rel_pos(table, 15), table)
    pos = torch.randn(1, 8, 8, 4)
    torch.testing.assert_close(resize_pos_embed(pos, 8), pos, atol=1e-6, rtol=0)


def test_resized_position_embedding_keeps_values_at_the_same_relative_positions():
    grid = torch.arange(8.0)
    ramp = (grid[:, None] + 3 * grid[None, :])[None, :, :, None]  # [1, 8, 8, 1], linear in (row, col)
    bump = torch.zeros(1, 8, 8, 1)
    bump[0, 2, 5] = 1.0
    for new, peak in ((16, ({4, 5}, {10, 11})), (14, ({4}, {9})), (4, ({1}, {2}))):
        src = (torch.arange(new) + 0.5) * 8 / new - 0.5  # the 8-grid coordinate of new cell u's centre
        out = resize_pos_embed(ramp, new)[0, :, :, 0]
        assert out.shape == (new, new)
        # Smooth: within 10% of one cell's rise (1 down + 3 across) of the ramp at the same relative
        # position (PyTorch's bicubic kernel, a = -0.75, is not exact on linear fields), and monotone.
        inner = (src >= 0) & (src <= 7)
        expected = src[:, None] + 3 * src[None, :]
        assert (out - expected)[inner][:, inner].abs().max() < 0.1 * (1 + 3)
        assert (out.diff(dim=0) > 0).all() and (out.diff(dim=1) > 0).all()
        # A feature at relative position (2.5/8, 5.5/8) stays there.
        row, col = divmod(int(resize_pos_embed(bump, new)[0, :, :, 0].argmax()), new)
        assert row in peak[0] and col in peak[1]
    constant = torch.full((1, 8, 8, 2), 0.7)
    torch.testing.assert_close(resize_pos_embed(constant, 11), torch.full((1, 11, 11, 2), 0.7))
    table = torch.arange(15.0)[:, None].expand(15, 4)  # a relative table linear in the offset
    out = resize_rel_pos(table, 27)
    assert out.shape == (27, 4)
    src = (torch.arange(27) + 0.5) * 15 / 27 - 0.5
    inner = (src >= 0) & (src <= 14)
    torch.testing.assert_close(out[inner, 0], src[inner], atol=1e-5, rtol=0)


def test_only_global_attention_tables_are_resized(meta_checkpoint):
    path, _ = meta_checkpoint
    sam = load_sam(path, 224, dtype=torch.bfloat16)  # 14x14 grid from an 8x8 checkpoint
    assert sam.vision_encoder.pos_embed.dtype == torch.bfloat16
    layers = sam.vision_encoder.layers
    assert layers[1].attn.rel_pos_h.shape == (27, 32)  # global: spans the new grid
    assert layers[0].attn.rel_pos_h.shape == (5, 32) and layers[2].attn.rel_pos_w.shape == (5, 32)  # window 3
    assert sam.config.prompt_encoder_config.image_embedding_size == 14


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match="multiple of the patch size"):
        load_sam(None, 100)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_sam("/nonexistent/sam_vit_h.pth")
    with pytest.raises(ValueError, match="not a segment-anything state dict"):
        meta_sam_config({"model.weight": torch.zeros(1)})
