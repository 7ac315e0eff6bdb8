"""Real-size policies with random weights: parameters, memory and time per clip, on one GPU.

For each backbone in turn (freed before the next):
  videollama2-av  SigLIP so400m/384 + STC connector + BEATs + audio MLP + Qwen2-7B decoder
  qwen2.5-omni    the Qwen2.5-Omni-7B thinker's vision and audio encoders + its Qwen2-7B decoder
each with LoRA (r=8 on q/v, lm_head and embed_tokens trained in full), the [SEG] projector and
SAM ViT-H at 224 px, built on the meta device and materialised in bf16 on the GPU (no files, no
downloads). Measured per clip (10 frames, 10 s of audio, a prompt and a 150-token answer):
  - vision and audio encoder forward; SAM image encoding of the 10 frames
  - the policy's forward with masks (no grad) at batch 1 and 4
  - one training forward + backward at batch 2 (time, peak memory)
Runs in under 5 minutes on an H100 (torch + transformers 5 + peft + accelerate; no vLLM, Ray or
DeepSpeed needed). ``--tiny`` runs the same code with tiny sizes on the CPU (what the test does).

    PYTHONPATH=. python bench/gpu_model_check.py [--tiny] [--device cuda] [--out results.json]
"""

from __future__ import annotations

import argparse
import gc
import json
import time
from pathlib import Path

import torch

from aurora_rl.config.schema import LoraConfig
from aurora_rl.model.backbones.weight_loading import empty_init, materialize_random
from aurora_rl.model.build import apply_lora
from aurora_rl.model.policy import AVSegPolicy, PolicyInputs, TokenIds
from aurora_rl.model.sam_segmenter import SamSegmenter
from aurora_rl.model.seg_projector import SegProjector

QWEN2_7B = dict(vocab_size=152064, hidden_size=3584, intermediate_size=18944, num_hidden_layers=28,
                num_attention_heads=28, num_key_value_heads=4, rms_norm_eps=1e-6, max_position_embeddings=32768)
TINY_LLM = dict(vocab_size=512, hidden_size=128, intermediate_size=256, num_hidden_layers=2, num_attention_heads=4,
                num_key_value_heads=2, rms_norm_eps=1e-6, max_position_embeddings=4096)


def sizes(tiny: bool) -> dict:
    """Clip and model sizes: the released models, or tiny stand-ins of the same structure."""
    if tiny:
        return dict(llm=TINY_LLM, frames=4, omni_image=56, audio_frames=96, prompt=24, answer=20,
                    siglip=dict(hidden_size=48, num_hidden_layers=3, num_attention_heads=2, intermediate_size=96,
                                image_size=56, patch_size=14),
                    beats=dict(embed_dim=32, encoder_layers=2, encoder_embed_dim=64, encoder_ffn_embed_dim=128,
                               encoder_attention_heads=2, conv_pos=16, conv_pos_groups=4, num_buckets=32),
                    omni_vision=dict(depth=2, hidden_size=64, num_heads=2, intermediate_size=128, window_size=56,
                                     fullatt_block_indexes=[1]),
                    omni_audio=dict(encoder_layers=2, encoder_attention_heads=2, encoder_ffn_dim=128, d_model=64),
                    sam=dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=2, mlp_dim=128,
                             global_attn_indexes=[1], image_size=64, patch_size=16, window_size=2))
    return dict(llm=QWEN2_7B, frames=10, omni_image=336, audio_frames=998, prompt=64, answer=150,
                siglip=dict(hidden_size=1152, num_hidden_layers=27, num_attention_heads=16, intermediate_size=4304,
                            image_size=384, patch_size=14),
                beats=dict(),  # BEATsConfig defaults are BEATs_iter3+
                omni_vision=dict(depth=32, hidden_size=1280, num_heads=16, intermediate_size=3420, window_size=112,
                                 fullatt_block_indexes=[7, 15, 23, 31]),
                omni_audio=dict(encoder_layers=32, encoder_attention_heads=20, encoder_ffn_dim=5120, d_model=1280),
                sam=dict(hidden_size=1280, num_hidden_layers=32, num_attention_heads=16, mlp_dim=5120,
                         global_attn_indexes=[7, 15, 23, 31], image_size=224, patch_size=16, window_size=14))


def build_backbone(name: str, s: dict):
    """(llm, vision, audio, audio_kind) on the meta device."""
    from transformers import Qwen2Config, SiglipVisionConfig

    llm_cfg = Qwen2Config(**s["llm"], rope_parameters={"rope_type": "default", "rope_theta": 1e6},
                          tie_word_embeddings=False)
    if name == "videollama2-av":
        from aurora_rl.model.backbones.beats import BEATsConfig
        from aurora_rl.model.backbones.videollama2_av import VideoLLaMA2Spec, build_modules

        spec = VideoLLaMA2Spec(llm=llm_cfg, siglip=SiglipVisionConfig(**s["siglip"]), siglip_folder=None,
                               beats=BEATsConfig(**s["beats"]))
        return (*build_modules(spec), "fbank")
    from transformers.models.qwen2_5_omni.configuration_qwen2_5_omni import Qwen2_5OmniThinkerConfig

    from aurora_rl.model.backbones.qwen_omni import OmniSpec, build_modules

    h = s["llm"]["hidden_size"]
    thinker = Qwen2_5OmniThinkerConfig(
        audio_config=dict(**s["omni_audio"], num_mel_bins=128, output_dim=h),
        vision_config=dict(**s["omni_vision"], out_hidden_size=h, patch_size=14, spatial_merge_size=2,
                           temporal_patch_size=2),
        text_config=dict(**s["llm"], rope_parameters={"rope_type": "default", "rope_theta": 1e6,
                                                      "mrope_section": [16, 24, 24]}))
    return (*build_modules(OmniSpec(thinker), s["omni_image"]), "mel")


def build_sam(s: dict):
    from transformers import SamConfig, SamMaskDecoderConfig, SamModel, SamPromptEncoderConfig, SamVisionConfig

    v = s["sam"]
    config = SamConfig(vision_config=SamVisionConfig(**v, output_channels=256),
                       prompt_encoder_config=SamPromptEncoderConfig(image_size=v["image_size"],
                                                                    patch_size=v["patch_size"]),
                       mask_decoder_config=SamMaskDecoderConfig())
    return SamModel(config)


def build_random_policy(name: str, s: dict, device: str, dtype: torch.dtype):
    with empty_init():
        llm, vision, audio, kind = build_backbone(name, s)
        sam = build_sam(s)
    for module in (llm, vision, audio, sam):
        materialize_random(module, dtype, device)
    vision.requires_grad_(False)
    audio.requires_grad_(False)
    vocab = s["llm"]["vocab_size"]
    ids = TokenIds(seg=vocab - 3, video=vocab - 2, audio=vocab - 1, pad=0, eos=1)
    llm = apply_lora(llm, LoraConfig())
    segmenter = SamSegmenter(sam)
    projector = SegProjector(s["llm"]["hidden_size"], segmenter.prompt_dim)
    policy = AVSegPolicy(llm, vision, audio, projector, segmenter, ids, mask_size=s["sam"]["image_size"])
    policy.to(device)
    for p in policy.parameters():
        p.data = p.data.to(dtype)
    return policy, kind


def make_batch(policy, s: dict, kind: str, b: int, device: str, seed: int = 0) -> PolicyInputs:
    g = torch.Generator().manual_seed(seed)
    ids, vocab = policy.ids, s["llm"]["vocab_size"]
    prompt = [ids.video, ids.audio] + torch.randint(2, vocab - 3, (s["prompt"],), generator=g).tolist()
    answer = torch.randint(2, vocab - 3, (s["answer"],), generator=g).tolist()
    answer[-2] = ids.seg
    image = s["siglip"]["image_size"]
    audio_frames = s["audio_frames"] if kind == "fbank" else s["audio_frames"] + 2  # 100 mel frames per second
    return PolicyInputs(
        prompt_ids=[prompt] * b, answer_ids=[answer] * b,
        frames=torch.rand(b, s["frames"], 3, image, image, generator=g).to(device),
        fbank=torch.randn(b, audio_frames, 128, generator=g).to(device),
        fbank_lengths=torch.full((b,), audio_frames, device=device),
    )


def timed(fn, device: str, reps: int) -> tuple[float, object]:
    """Median seconds of ``reps`` calls after one warm-up, and the last result."""
    out = fn()
    times = []
    for _ in range(reps):
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        out = fn()
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2], out


def peak_gb(device: str) -> float | None:
    """Peak allocated GPU memory since the last reset (None on the CPU, where torch does not track it)."""
    return round(torch.cuda.max_memory_allocated() / 2**30, 2) if device == "cuda" else None


def reset_peak(device: str) -> None:
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()


def check_backbone(name: str, s: dict, device: str, dtype: torch.dtype, reps: int) -> dict:
    start = time.perf_counter()
    policy, kind = build_random_policy(name, s, device, dtype)
    res = {"backbone": name, "build_s": round(time.perf_counter() - start, 1)}
    params = {part: sum(p.numel() for p in getattr(policy, part).parameters()) / 1e9
              for part in ("llm", "vision", "audio", "projector", "segmenter")}
    res["params_B"] = {k: round(v, 3) for k, v in params.items()}
    res["trainable_B"] = round(sum(p.numel() for p in policy.parameters() if p.requires_grad) / 1e9, 3)
    res["weights_GB"] = round(sum(p.numel() * p.element_size() for p in policy.parameters()) / 2**30, 2)
    policy.eval()
    with torch.no_grad():
        one = make_batch(policy, s, kind, 1, device)
        t, video = timed(lambda: policy.vision(one.frames), device, reps)
        res["vision_s_per_clip"], res["video_tokens"] = round(t, 4), video.shape[1]
        t, sound = timed(lambda: policy.audio(one.fbank, one.fbank_lengths), device, reps)
        res["audio_s_per_clip"], res["audio_tokens"] = round(t, 4), sound.shape[1]
        t, _ = timed(lambda: policy.segmenter.encode(one.frames[0]), device, reps)
        res["sam_encode_s_per_clip"] = round(t, 4)
        for b in (1, 4):
            batch = make_batch(policy, s, kind, b, device)
            reset_peak(device)
            t, out = timed(lambda: policy(batch), device, reps)
            res[f"forward_b{b}_s_per_clip"] = round(t / b, 4)
            res[f"forward_b{b}_peak_GB"] = peak_gb(device)
        res["sequence_tokens"] = len(batch.prompt_ids[0]) - 2 + res["video_tokens"] + res["audio_tokens"] + s["answer"]
        assert torch.isfinite(out.mask_logits).all() and torch.isfinite(out.answer_logprobs).all()
    policy.train()
    batch = make_batch(policy, s, kind, 2, device)

    def train_step():
        policy.zero_grad(set_to_none=True)
        out = policy(batch)
        loss = -(out.answer_logprobs * out.answer_mask).sum() / out.answer_mask.sum() + out.mask_logits.sigmoid().mean()
        loss.backward()
        return loss

    reset_peak(device)
    t, loss = timed(train_step, device, max(1, reps // 2))
    res["train_step_b2_s_per_clip"] = round(t / 2, 4)
    res["train_step_b2_peak_GB"] = peak_gb(device)
    assert torch.isfinite(loss)
    del policy, batch, one
    release(device)
    return res


def release(device: str) -> None:
    """Give freed tensors back (the caller has dropped its references) before the next model."""
    gc.collect()
    if device == "cuda":
        torch.cuda.empty_cache()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true", help="tiny sizes (CPU smoke run)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--backbones", nargs="+", default=["videollama2-av", "qwen2.5-omni"])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None, help="also write the results as JSON here")
    args = parser.parse_args()
    dtype = torch.bfloat16
    s = sizes(args.tiny)
    header = {"device": torch.cuda.get_device_name() if args.device == "cuda" else "cpu",
              "torch": torch.__version__, "dtype": str(dtype), "tiny": args.tiny}
    print(json.dumps(header), flush=True)
    results = []
    for name in args.backbones:
        res = check_backbone(name, s, args.device, dtype, args.reps)
        print(json.dumps(res), flush=True)
        results.append(res)
    if args.out:
        args.out.write_text(json.dumps({"header": header, "results": results}, indent=2))


if __name__ == "__main__":
    main()
