"""On one GPU: the learner's step against the card's bf16 peak, and SAM ViT-H clips/s at 224 and 1024 px.

    PYTHONPATH=. python bench/gpu_learner_sam.py [--tiny] [--device cuda] [--out results.json] [--table table.md]

Random weights, bf16, nothing downloaded; torch + transformers 5 + peft + accelerate (no vLLM,
Ray or DeepSpeed). Under 5 minutes on one H100 / H200. ``--tiny`` runs the same code with tiny
sizes on the CPU (what the test does).
  - peak: the card's measured bf16 matmul rate (square matmuls, best of several sizes);
  - learner: the real-size videollama2-av policy (SigLIP + STC + BEATs + Qwen2-7B with LoRA r=8
    on q/v, lm_head and embed_tokens trained, [SEG] projector, SAM ViT-H at 224 px) taking a
    training step: forward with masks, token loss + mask loss, backward, AdamW step, at batch 2
    of (prompt + media + 150-token answer). FLOPs are counted once with torch's FlopCounterMode
    (matmuls and attention, forward and backward), then steps are timed without it: tokens/s,
    achieved TFLOP/s against the peak (model FLOPs utilisation), peak memory;
  - SAM ViT-H image encoder + mask decoder for a clip (10 frames, G=3 [SEG] prompts) at 224 and
    1024 px: encoding every time (baseline) against the per-clip cache of frozen image
    embeddings that the rollout actors and learner use (decode only).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import time
from pathlib import Path

import torch

from bench.gpu_model_check import build_random_policy, make_batch, peak_gb, release, reset_peak, sizes
from bench.side_by_side import Table

VIT_H = dict(hidden_size=1280, num_hidden_layers=32, num_attention_heads=16, mlp_dim=5120,
             global_attn_indexes=[7, 15, 23, 31], patch_size=16, window_size=14)


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def best_seconds(fn, device: str, reps: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(reps):
        sync(device)
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return min(times)


def matmul_peak_tflops(device: str, tiny: bool, reps: int) -> dict:
    """The best bf16 TFLOP/s of square matmuls (what a dense kernel reaches on this card)."""
    best = {}
    for n in ((256, 512) if tiny else (4096, 8192, 16384)):
        a = torch.randn(n, n, device=device, dtype=torch.bfloat16)
        b = torch.randn(n, n, device=device, dtype=torch.bfloat16)
        inner = 2 if tiny else 10
        t = best_seconds(lambda: [a @ b for _ in range(inner)], device, reps)
        best[n] = 2 * n**3 * inner / t / 1e12
        del a, b
    return {"peak_tflops": max(best.values()), "by_size": {str(k): round(v, 2) for k, v in best.items()}}


@contextlib.contextmanager
def eager_attention(model: torch.nn.Module):
    """Every transformers config inside ``model`` set to eager attention for the block."""
    configs = {id(m.config): m.config for m in model.modules()
               if hasattr(getattr(m, "config", None), "_attn_implementation")}
    saved = {key: c._attn_implementation for key, c in configs.items()}
    for c in configs.values():
        c._attn_implementation = "eager"
    try:
        yield
    finally:
        for key, c in configs.items():
            c._attn_implementation = saved[key]


def learner_step(s: dict, device: str, reps: int, batch: int = 2) -> dict:
    from torch.utils.flop_counter import FlopCounterMode

    from aurora_rl.model.mask_loss import mask_loss

    dtype = torch.bfloat16
    policy, kind = build_random_policy("videollama2-av", s, device, dtype)
    policy.train()
    params = [p for p in policy.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-5, foreach=True)
    inputs = make_batch(policy, s, kind, batch, device)
    m = policy.mask_size
    gt = (torch.rand(batch, s["frames"], m, m, device=device) > 0.5).float()

    def step():
        optimizer.zero_grad(set_to_none=True)
        out = policy(inputs)
        loss = -(out.answer_logprobs * out.answer_mask).sum() / out.answer_mask.sum()
        loss = loss + mask_loss(out.mask_logits.float(), gt)[0]
        loss.backward()
        optimizer.step()
        return out

    out = step()  # warm-up: allocator, kernels, optimizer state
    # FlopCounterMode cannot count SDPA with grouped KV heads (Qwen2-7B: 28 query, 4 KV heads) on
    # CUDA; eager attention does the same matmuls with the KV heads repeated, so count under it.
    with eager_attention(policy), FlopCounterMode(display=False) as counter:
        optimizer.zero_grad(set_to_none=True)
        o = policy(inputs)
        loss = -(o.answer_logprobs * o.answer_mask).sum() / o.answer_mask.sum()
        (loss + mask_loss(o.mask_logits.float(), gt)[0]).backward()
    flops = counter.get_total_flops()
    with torch.no_grad():
        video = policy.vision(inputs.frames[:1]).shape[1]
        audio = policy.audio(inputs.fbank[:1], inputs.fbank_lengths[:1]).shape[1]
    reset_peak(device)
    seconds = best_seconds(step, device, reps)  # no clip keys: SAM encodes the frames every step
    tokens = batch * (len(inputs.prompt_ids[0]) - 2 + video + audio + len(inputs.answer_ids[0]))
    res = {"batch": batch, "tokens": tokens, "step_s": round(seconds, 4), "tokens_per_s": round(tokens / seconds, 1),
           "flops_per_step": flops, "achieved_tflops": round(flops / seconds / 1e12, 3),
           "trainable_B": round(sum(p.numel() for p in params) / 1e9, 3), "peak_GB": peak_gb(device)}
    assert torch.isfinite(out.answer_logprobs).all()
    del policy, optimizer, inputs, out, o
    release(device)
    return res


def sam_clips(s: dict, image_size: int, device: str, reps: int, group: int = 3) -> dict:
    from aurora_rl.model.backbones.weight_loading import empty_init, materialize_random
    from aurora_rl.model.sam_segmenter import SamSegmenter
    from bench.gpu_model_check import build_sam

    vit = dict(s["sam"], image_size=image_size)
    with empty_init():
        sam = build_sam({"sam": vit})
    materialize_random(sam, torch.bfloat16, device)
    seg = SamSegmenter(sam.eval(), cache_size=4)
    frames = torch.rand(s["frames"], 3, image_size, image_size, device=device)
    prompts = torch.randn(group, 1, seg.prompt_dim, device=device, dtype=torch.bfloat16)
    out_size = (image_size, image_size)  # masks at the frame size

    @torch.no_grad()
    def uncached():
        return seg.decode_prompts(seg.encode(frames), prompts, out_size)

    @torch.no_grad()
    def cached():
        return seg.decode_prompts(seg.encode(frames, cache_key="clip"), prompts, out_size)

    reset_peak(device)
    t_full = best_seconds(uncached, device, reps)
    t_cached = best_seconds(cached, device, reps)
    res = {"image_size": image_size, "frames": s["frames"], "prompts": group,
           "encode_decode_clips_per_s": round(1 / t_full, 2), "cached_decode_clips_per_s": round(1 / t_cached, 2),
           "peak_GB": peak_gb(device)}
    del seg, sam
    release(device)
    return res


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true", help="tiny sizes (CPU smoke run)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    parser.add_argument("--table", type=Path, default=None, help="write the markdown table here")
    args = parser.parse_args()
    s = sizes(args.tiny)
    if not args.tiny:
        s["sam"] = dict(s["sam"], **VIT_H)
    header = {"device": torch.cuda.get_device_name() if args.device == "cuda" else "cpu",
              "torch": torch.__version__, "dtype": "torch.bfloat16", "tiny": args.tiny}
    print(json.dumps(header), flush=True)
    peak = matmul_peak_tflops(args.device, args.tiny, args.reps)
    print(json.dumps(peak), flush=True)
    learner = learner_step(s, args.device, args.reps)
    print(json.dumps(learner), flush=True)
    sam_sizes = (64, 128) if args.tiny else (224, 1024)
    sam = [sam_clips(s, size, args.device, args.reps) for size in sam_sizes]
    for r in sam:
        print(json.dumps(r), flush=True)

    table = Table(f"GPU: learner step and SAM ({header['device']}, bf16{', tiny sizes' if args.tiny else ''})")
    rate_at_peak = peak["peak_tflops"] * 1e12 / (learner["flops_per_step"] / learner["tokens"])
    table.add(f"learner step (videollama2-av, LoRA, batch {learner['batch']}, {learner['tokens']} tokens): "
              "measured bf16 matmul peak vs achieved", "TFLOP/s", peak["peak_tflops"], learner["achieved_tflops"])
    table.add("learner step: tokens/s at the peak vs achieved", "tokens/s", rate_at_peak, learner["tokens_per_s"])
    for r in sam:
        table.add(f"SAM {'ViT-H' if not args.tiny else 'tiny'} at {r['image_size']} px, {r['frames']} frames + "
                  f"G={r['prompts']} prompts: encode every clip vs cached image embeddings", "clips/s",
                  r["encode_decode_clips_per_s"], r["cached_decode_clips_per_s"])
    memory = f"{learner['peak_GB']} GB" if learner["peak_GB"] is not None else "not tracked on the CPU"
    table.notes.append(f"learner peak memory {memory}, {learner['trainable_B']} B trainable "
                       f"parameters, {learner['flops_per_step'] / 1e9:,.1f} GFLOP per step (FlopCounterMode)")
    table.emit(args.table)
    if args.out:
        args.out.write_text(json.dumps({"header": header, "peak": peak, "learner": learner, "sam": sam}, indent=2))


if __name__ == "__main__":
    main()
