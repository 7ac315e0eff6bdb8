"""VideoLLaMA2.1-AV: the loader on a tiny checkpoint in the released layout, against an independent
forward over the raw tensors; then the policy on it: an SFT step, a checkpoint round trip, vLLM."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from aurora_rl.model.backbones.videollama2_av import load_videollama2_av
from aurora_rl.model.build import MediaShape
from aurora_rl.model.checkpoint import export_merged_llm, load_policy, save_policy
from aurora_rl.model.factory import build_policy
from tests.data.test_media_prep import frame_sample
from tests.model import videollama2_reference as ref
from tests.model.backbone_fixtures import make_inputs, model_config, sample_with_vllm, sft_step

SHAPE = MediaShape(fbank_bins=128, mask_size=32, image_size=56, num_frames=4, audio_features="kaldi_fbank")


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return ref.write_videollama2_av(tmp_path_factory.mktemp("vl2"), seed=0)


def clip_batch(seed: int, frames: int = 4, audio_frames: int = 64):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(2, frames, 3, 56, 56, generator=g), torch.randn(2, audio_frames, 128, generator=g) * 4 + 12,
            torch.tensor([audio_frames, audio_frames]))


def test_loaded_parts_match_an_independent_forward_over_the_raw_tensors(folder):
    llm, vision, audio = load_videollama2_av(folder)
    raw = ref.load_raw(folder)
    frames, fbank, _ = clip_batch(0)
    with torch.no_grad():
        video = vision(frames)
        siglip = ref.ref_siglip(folder.parent / "siglip-so400m-patch14-384", frames.flatten(0, 1))
        expected_video = ref.ref_stc(ref.sub(raw, "model.mm_projector."), siglip.view(2, 4, 16, -1))
        sound = audio(fbank)
        expected_sound = ref.ref_audio_projector(raw, ref.ref_beats(ref.sub(raw, "model.audio_tower."), fbank))
    # 4 frames of a 4x4 patch grid -> STC halves t, h, w -> 2 * 2 * 2 tokens; 64 fbank frames -> 4 x 8 patches
    assert video.shape == (2, 8, ref.LLM["hidden"]) and sound.shape == (2, 32, ref.LLM["hidden"])
    torch.testing.assert_close(video, expected_video, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(sound, expected_sound, rtol=1e-4, atol=1e-5)
    assert video.std() > 0.1 and sound.std() > 0.1

    from transformers import Qwen2Config, Qwen2ForCausalLM

    cfg = json.loads((folder / "config.json").read_text())
    fields = ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
              "num_key_value_heads", "rms_norm_eps")
    reference = Qwen2ForCausalLM(Qwen2Config(**{k: cfg[k] for k in fields}, tie_word_embeddings=False,
                                             rope_parameters={"rope_type": "default", "rope_theta": cfg["rope_theta"]}))
    reference.load_state_dict({k: v for k, v in raw.items() if not k.startswith(("model.mm_", "model.audio_tower."))})
    embeds = torch.randn(1, 12, ref.LLM["hidden"], generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(llm(inputs_embeds=embeds).logits, reference(inputs_embeds=embeds).logits)


def test_audio_tokens_do_not_depend_on_padding_after_the_clip(folder):
    _, _, audio = load_videollama2_av(folder)
    _, fbank, _ = clip_batch(2, audio_frames=96)
    short = torch.zeros(1, 128, 128)
    short[0, :48] = fbank[0, :48]
    longer = torch.zeros(1, 192, 128)
    longer[0, :48] = fbank[0, :48]
    with torch.no_grad():
        a = audio(short, torch.tensor([48]))
        b = audio(longer, torch.tensor([48]))
        unmasked = audio(short)
    valid = 48 // 16 * 8
    torch.testing.assert_close(a[:, :valid], b[:, :valid], rtol=1e-5, atol=1e-5)
    assert not torch.allclose(a[:, :valid], unmasked[:, :valid], atol=1e-3)  # the mask did something


def test_policy_trains_one_sft_step_and_saves_only_what_the_folders_cannot_rebuild(folder, tmp_path):
    from aurora_rl.model.sam_checkpoint import build_tiny_sam

    cfg = model_config("videollama2-av", folder)
    cfg.sam.path = str(tmp_path / "sam")  # an HF SAM folder, wired through to the segmenter
    build_tiny_sam(input_size=64, seed=9, hidden_size=32, window_size=2).save_pretrained(cfg.sam.path)
    policy, tok = build_policy(cfg, SHAPE, seed=0)
    sam_file = build_tiny_sam(input_size=64, seed=9, hidden_size=32, window_size=2).state_dict()
    assert all(torch.equal(v, sam_file[k]) for k, v in policy.segmenter.sam.state_dict().items())
    assert tok.convert_tokens_to_ids("[SEG]") == len(tok) - 3  # added after the Qwen2 vocabulary
    assert policy.base_lm.get_input_embeddings().weight.shape[0] == len(tok)  # grown to fit
    frames, fbank, lengths = clip_batch(3)
    batch = make_inputs(tok, frames, fbank, lengths)
    step = sft_step(policy, batch, SHAPE.mask_size)
    assert all(v == v and v > 0 for k, v in step["parts"].items() if k != "distill"), step["parts"]
    changed = step["changed"]
    assert changed <= step["trainable"]
    for part in ("lora_A", "lora_B", "embed_tokens.modules_to_save", "lm_head.modules_to_save", "projector.",
                 "mask_decoder"):
        assert any(part in n for n in changed), part
    assert not any(n.startswith(("vision.", "audio.")) for n in step["trainable"])  # frozen encoders

    policy.eval()
    ckpt = save_policy(policy, tok, cfg, SHAPE, tmp_path / "ckpt")
    from safetensors.torch import load_file

    saved = load_file(str(ckpt / "policy.safetensors"))
    assert saved.keys() == step["trainable"]
    assert not any(k.startswith(("vision.", "audio.", "segmenter.sam.vision_encoder.")) or "base_layer" in k
                   for k in saved)
    loaded, tok2, cfg2, shape2 = load_policy(ckpt)
    loaded.eval()
    assert cfg2 == cfg and shape2 == SHAPE and tok2.get_vocab() == tok.get_vocab()
    a, b = policy.state_dict(), loaded.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    with torch.no_grad():
        assert torch.equal(policy(batch).mask_logits, loaded(batch).mask_logits)


def test_exported_policy_samples_with_vllm_from_prompt_embeds(ray_node, folder, tmp_path):
    policy, tok = build_policy(model_config("videollama2-av", folder), SHAPE, seed=0)
    policy.eval()
    frames, fbank, lengths = clip_batch(4)
    batch = make_inputs(tok, frames, fbank, lengths)
    batch.answer_ids = [[], []]
    embeds = policy.prompt_embeds(batch.prompt_ids, frames, fbank, lengths)
    assert embeds[0].shape[0] == len(batch.prompt_ids[0]) - 2 + 8 + 32
    with torch.no_grad():
        first = policy(batch, with_masks=False).first_token_logits.log_softmax(-1)
    results = sample_with_vllm(export_merged_llm(policy, tok, tmp_path / "merged"), embeds)
    for i, completions in enumerate(results):
        assert len(completions) == 2
        for c in completions:
            assert len(c["token_ids"]) == 8 and all(0 <= t < len(tok) for t in c["token_ids"])
            token = c["token_ids"][0]
            assert c["logprobs"][0][token] == pytest.approx(float(first[i, token]), abs=1e-3)


@pytest.mark.parametrize("fill", ["repeat", "black"])
def test_the_vision_encoder_takes_the_backbones_16_frames(folder, fill):
    """Clips of 4 frames; VideoLLaMA2.1-AV takes 16: repeated by its uniform frame sampling, or
    padded with black frames. The token count follows (STC: 16 / 2 * (4 / 2)^2 = 32, not 8), and
    the preparation travels with the checkpoint."""
    from aurora_rl.config.schema import DataConfig

    model = model_config("videollama2-av", folder)
    model.frame_fill = fill
    shape = MediaShape.for_run(DataConfig(num_frames=4, image_size=56, mask_size=32), model)
    assert shape.prep.video_frames == 16 and shape.prep.frame_fit == "pad" and shape.prep.audio_seconds == 30
    policy, tok = build_policy(model, shape, seed=0)
    policy.eval()
    seen = []
    policy.vision.register_forward_pre_hook(lambda module, args: seen.append(args[0]))
    frames, fbank, lengths = clip_batch(6)
    batch = make_inputs(tok, frames, fbank, lengths)
    embeds = policy.prompt_embeds(batch.prompt_ids, frames, fbank, lengths)
    assert embeds[0].shape[0] == len(batch.prompt_ids[0]) - 2 + 32 + 32
    assert seen[0].shape == (2, 16, 3, 56, 56)
    if fill == "repeat":
        shown = [int((seen[0][0, i] - frames[0]).abs().flatten(1).sum(1).argmin()) for i in range(16)]
        assert shown == frame_sample(4, 16).tolist() == [0, 0, 0, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 3, 3, 3]
    else:
        assert torch.equal(seen[0][:, :4], frames) and not seen[0][:, 4:].any()


def test_the_context_one_clip_needs_follows_the_backbone_and_its_preparation(folder, tmp_path):
    """vLLM's max_model_len: media tokens counted through the encoders (16 frames through STC: 16/2
    * (grid/2)^2; 30 s of audio: 2,998 fbank frames -> BEATs' 16-frame patches x 8 mel patches),
    the text budget and the answer. A backbone whose positions cannot hold it is refused by name
    when the engine starts."""
    from actors.policy_engine import PolicyEngine, PromptTooLong
    from aurora_rl.config.schema import DataConfig
    from aurora_rl.model.policy import TEXT_TOKENS, ContextBudget, context_budget

    model = model_config("videollama2-av", folder)
    shape = MediaShape.for_run(DataConfig(num_frames=10, image_size=56, mask_size=32), model)
    policy, tok = build_policy(model, shape, seed=0)
    grid = ref.SIGLIP["image"] // ref.SIGLIP["patch"]
    fbank_frames = 1 + (30 * 16000 - 400) // 160
    want = ContextBudget(16 // 2 * (grid // 2) ** 2, fbank_frames // 16 * (128 // 16), TEXT_TOKENS, 150)
    assert context_budget(policy, shape, 150) == want and want.audio == 1496
    clip_only = MediaShape.for_run(DataConfig(num_frames=10, image_size=56, mask_size=32), model)
    clip_only.prep = dataclasses.replace(clip_only.prep, audio_seconds=None, video_frames=None)
    assert context_budget(policy, clip_only, 150).audio == (1 + (10 * 16000 - 400) // 160) // 16 * 8  # 496

    ckpt = save_policy(policy, tok, model, shape, tmp_path / "ckpt")  # its LLM has 512 positions
    with pytest.raises(PromptTooLong, match=rf"needs .*= {want.total} tokens, but the LLM has 512 positions"):
        PolicyEngine(str(ckpt), str(tmp_path / "engine"), answer_tokens=150)
