"""Qwen2.5-Omni: the loader on a tiny checkpoint in the released layout, against transformers' own
thinker over the same tensors; then the policy on it: an SFT step and vLLM sampling of the
exported decoder (a plain Qwen2 folder) from ``prompt_embeds``."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from aurora_rl.model.backbones.qwen_omni import load_qwen_omni
from aurora_rl.model.build import MediaShape
from aurora_rl.model.checkpoint import export_merged_llm
from aurora_rl.model.factory import build_policy
from tests.model import qwen_omni_checkpoint as ref
from tests.model.backbone_fixtures import make_inputs, model_config, sample_with_vllm, sft_step

SHAPE = MediaShape(fbank_bins=128, mask_size=32, image_size=112, num_frames=4, audio_features="whisper_log_mel")


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return ref.write_qwen_omni(tmp_path_factory.mktemp("omni"), seed=0)


def clip_batch(seed: int, mel_frames: int = 230):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(2, 4, 3, 112, 112, generator=g), torch.randn(2, mel_frames, 128, generator=g),
            torch.tensor([mel_frames, mel_frames]))


def test_patch_order_is_the_qwen_processors():
    """The reference patchifier, on a frame pair that is one image twice, equals the image processor's."""
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    image = np.random.default_rng(0).random((56, 84, 3), dtype=np.float32)
    out = Qwen2VLImageProcessorPil()(images=[image], do_resize=False, do_rescale=False, return_tensors="np")
    np.testing.assert_allclose(ref.processor_patches(np.stack([image, image])), out["pixel_values"], atol=1e-6)
    assert out["image_grid_thw"].tolist() == [[1, 4, 6]]


def test_loaded_parts_match_transformers_thinker_on_the_raw_tensors(folder):
    llm, vision, audio = load_qwen_omni(folder, image_size=112)
    thinker = ref.reference_thinker(folder)
    frames, mel, _ = clip_batch(0)
    lengths = torch.tensor([230, 180])
    mel[1, 180:] = 0
    with torch.no_grad():
        video = vision(frames)
        pixels = torch.cat([torch.from_numpy(ref.processor_patches(f.permute(0, 2, 3, 1).numpy())) for f in frames])
        expected = thinker.get_video_features(pixel_values_videos=pixels,
                                              video_grid_thw=torch.tensor([[2, 8, 8]] * 2)).pooler_output
        sound = audio(mel, lengths)
        mask = (torch.arange(230)[None] < lengths[:, None]).long()
        expected_sound = thinker.get_audio_features(input_features=mel.transpose(1, 2),
                                                    feature_attention_mask=mask).last_hidden_state
    assert video.shape == (2, 32, ref.HIDDEN)  # 2 frame pairs x (112 / 28)^2 merged patches
    torch.testing.assert_close(video, torch.stack(list(expected)), rtol=1e-5, atol=1e-6)
    # 230 mel frames -> 115 after the stride-2 conv -> 57 after pooling; 180 -> 90 -> 45
    assert sound.shape == (2, 57, ref.HIDDEN)
    torch.testing.assert_close(sound[0], expected_sound[:57], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(sound[1, :45], expected_sound[57:], rtol=1e-5, atol=1e-6)
    assert torch.all(sound[1, 45:] == 0)

    embeds = torch.randn(1, 20, ref.HIDDEN, generator=torch.Generator().manual_seed(1))
    flat = torch.arange(20).view(1, 1, -1).expand(3, 1, -1)  # TMRoPE with time = height = width = t
    with torch.no_grad():
        ours = llm(inputs_embeds=embeds).logits
        theirs = thinker.lm_head(thinker.model(inputs_embeds=embeds, position_ids=flat).last_hidden_state)
        native = flat.clone()
        native[1:, :, 5:13] = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3]) + 5  # a 2-D patch grid as TMRoPE places it
        spatial = thinker.lm_head(thinker.model(inputs_embeds=embeds, position_ids=native).last_hidden_state)
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(ours[0, 5:], spatial[0, 5:], atol=1e-3)  # what 1-D positions give up


def test_policy_trains_one_sft_step(folder):
    policy, tok = build_policy(model_config("qwen2.5-omni", folder), SHAPE, seed=0)
    assert policy.base_lm.get_input_embeddings().weight.shape[0] == len(tok) + 10  # spare rows: no resize
    frames, mel, lengths = clip_batch(3)
    step = sft_step(policy, make_inputs(tok, frames, mel, lengths), SHAPE.mask_size)
    assert all(v == v and v > 0 for k, v in step["parts"].items() if k != "distill"), step["parts"]
    for part in ("lora_A", "lora_B", "embed_tokens.modules_to_save", "projector.", "mask_decoder"):
        assert any(part in n for n in step["changed"]), part
    assert step["changed"] <= step["trainable"]
    assert not any(n.startswith(("vision.", "audio.")) for n in step["trainable"])


def test_exported_decoder_samples_with_vllm_from_prompt_embeds(ray_node, folder, tmp_path):
    policy, tok = build_policy(model_config("qwen2.5-omni", folder), SHAPE, seed=0)
    policy.eval()
    frames, mel, lengths = clip_batch(4)
    batch = make_inputs(tok, frames, mel, lengths)
    batch.answer_ids = [[], []]
    embeds = policy.prompt_embeds(batch.prompt_ids, frames, mel, lengths)
    assert embeds[0].shape[0] == len(batch.prompt_ids[0]) - 2 + 32 + 57
    with torch.no_grad():
        first = policy(batch, with_masks=False).first_token_logits.log_softmax(-1)
    merged = export_merged_llm(policy, tok, tmp_path / "merged")
    assert '"Qwen2ForCausalLM"' in (merged / "config.json").read_text()
    results = sample_with_vllm(merged, embeds)
    for i, completions in enumerate(results):
        for c in completions:
            assert len(c["token_ids"]) == 8
            token = c["token_ids"][0]
            assert c["logprobs"][0][token] == pytest.approx(float(first[i, token]), abs=1e-3)
