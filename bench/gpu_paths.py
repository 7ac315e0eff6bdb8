"""Every torch path of the system on one GPU, at the released shapes, in one table.

    PYTHONPATH=. python bench/gpu_paths.py [--device cuda] [--tiny] [--backbones ...] [--out table.md]

For each backbone (VideoLLaMA2.1-AV; the Qwen2.5-Omni thinker), with random bf16 weights of the
released sizes made on the device (nothing downloaded), batch 1, a clip as the backbone's own
preparation makes it (10 Ref-AVS frames, VideoLLaMA2's 16 repeated frames and 30 s of audio):

  build               the policy: LLM with LoRA, encoders, [SEG] projector, SAM ViT-H at 224 px
  sft step            ``learner/sft_step.py``: DeepSpeed ZeRO-2 (world size 1), a CoT answer,
                      mask loss and [SEG] distillation from a frozen teacher (configs/real/sft.yaml)
  reflective sft step the same step on a reflective answer, without a teacher (stage 2)
  grpo learner step   ``learner/grpo_step.py``: G=3 completions, clipped policy loss, KL to a frozen
                      reference, mask terms, the skip flag all-reduced (configs/real/grpo.yaml)
  [SEG] pass + SAM    ``aurora_rl/model/seg_pass.py``: prompt embeddings, then the [SEG] pass and
                      SAM masks of given completions (the rollout actors' work around vLLM)
  evaluation forward  ``aurora_rl/model/generation.py``: a greedy answer with the policy's own LLM
                      and its masks
  broadcast buckets   ``aurora_rl/weight_sync.py``: the trainable weights packed into device
                      buckets, broadcast in a one-member group (NCCL on a GPU), unpacked, compared
Then, once: GPU against CPU for tiny policies of both structures (outputs and every gradient, float32
and bf16, within bounds), the learner step's achieved TFLOP/s against the card's bf16 matmul peak,
and SAM ViT-H clips/s with and without the per-clip embedding cache (224 and 1024 px).

Each path builds what it needs and gives the memory back before the next, so each must fit the
card alone (peak GB says by how much). Prints one table (path, ok, seconds, peak GB, what was
measured) and exits 1 if any path failed.
Needs torch, transformers, peft and DeepSpeed (pure Python: carried as a wheel where missing); no
Ray, vLLM or Redis. ``--device cpu --tiny`` is the smoke run the suite makes.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import gc
import os
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
BACKBONES = ("videollama2-av", "qwen2.5-omni")
QWEN2_7B = dict(vocab_size=152064, hidden_size=3584, intermediate_size=18944, num_hidden_layers=28,
                num_attention_heads=28, num_key_value_heads=4, rms_norm_eps=1e-6, max_position_embeddings=32768)
TINY_LLM = dict(vocab_size=512, hidden_size=128, intermediate_size=256, num_hidden_layers=2, num_attention_heads=4,
                num_key_value_heads=2, rms_norm_eps=1e-6, max_position_embeddings=8192)
VIT_H = dict(hidden_size=1280, num_hidden_layers=32, num_attention_heads=16, mlp_dim=5120,
             global_attn_indexes=[7, 15, 23, 31], patch_size=16, window_size=14)
# GPU against CPU: the largest ||a - b|| / ||a|| per tensor. A gradient zero in exact arithmetic (an
# attention key bias: softmax ignores a shift) is measured against the largest gradient norm.
PARITY_BOUNDS = {torch.float32: 1e-3, torch.bfloat16: 0.15}  # bf16 on the CPU itself: up to 0.08
ZERO_GRAD = 1e-5


def sizes(tiny: bool) -> dict:
    """Model and clip sizes: the released ones, or tiny stand-ins of the same structure."""
    if tiny:
        return dict(llm=TINY_LLM, image={"videollama2-av": 56, "qwen2.5-omni": 56}, mask=32, answer=20, prompt=24,
                    siglip=dict(hidden_size=48, num_hidden_layers=3, num_attention_heads=2, intermediate_size=96,
                                image_size=56, patch_size=14),
                    beats=dict(embed_dim=32, encoder_layers=2, encoder_embed_dim=64, encoder_ffn_embed_dim=128,
                               encoder_attention_heads=2, conv_pos=16, conv_pos_groups=4, num_buckets=32),
                    omni_vision=dict(depth=2, hidden_size=64, num_heads=2, intermediate_size=128, window_size=56,
                                     fullatt_block_indexes=[1]),
                    omni_audio=dict(encoder_layers=2, encoder_attention_heads=2, encoder_ffn_dim=128, d_model=64),
                    sam=dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=2, mlp_dim=128,
                             global_attn_indexes=[1], image_size=64, patch_size=16, window_size=2),
                    sam_sizes=(64, 128), matmuls=(256, 512))
    return dict(llm=QWEN2_7B, image={"videollama2-av": 384, "qwen2.5-omni": 336}, mask=224, answer=150, prompt=64,
                siglip=dict(hidden_size=1152, num_hidden_layers=27, num_attention_heads=16, intermediate_size=4304,
                            image_size=384, patch_size=14),
                beats=dict(),  # BEATsConfig defaults are BEATs_iter3+
                omni_vision=dict(depth=32, hidden_size=1280, num_heads=16, intermediate_size=3420, window_size=112,
                                 fullatt_block_indexes=[7, 15, 23, 31]),
                omni_audio=dict(encoder_layers=32, encoder_attention_heads=20, encoder_ffn_dim=5120, d_model=1280),
                sam=dict(VIT_H, image_size=224), sam_sizes=(224, 1024), matmuls=(4096, 8192, 16384))


# ------------------------------------------------------------------ models and clips


def build_backbone(name: str, s: dict):
    """(llm, vision, audio) on the meta device."""
    from transformers import Qwen2Config, SiglipVisionConfig

    llm_cfg = Qwen2Config(**s["llm"], rope_parameters={"rope_type": "default", "rope_theta": 1e6},
                          tie_word_embeddings=False)
    if name == "videollama2-av":
        from aurora_rl.model.backbones.beats import BEATsConfig
        from aurora_rl.model.backbones.videollama2_av import VideoLLaMA2Spec, build_modules

        spec = VideoLLaMA2Spec(llm=llm_cfg, siglip=SiglipVisionConfig(**s["siglip"]), siglip_folder=None,
                               beats=BEATsConfig(**s["beats"]))
        return build_modules(spec)
    from transformers.models.qwen2_5_omni.configuration_qwen2_5_omni import Qwen2_5OmniThinkerConfig

    from aurora_rl.model.backbones.qwen_omni import OmniSpec, build_modules

    h = s["llm"]["hidden_size"]
    thinker = Qwen2_5OmniThinkerConfig(
        audio_config=dict(**s["omni_audio"], num_mel_bins=128, output_dim=h),
        vision_config=dict(**s["omni_vision"], out_hidden_size=h, patch_size=14, spatial_merge_size=2,
                           temporal_patch_size=2),
        text_config=dict(**s["llm"], rope_parameters={"rope_type": "default", "rope_theta": 1e6,
                                                      "mrope_section": [16, 24, 24]}))
    return build_modules(OmniSpec(thinker), s["image"][name])


def build_sam(vit: dict):
    from transformers import SamConfig, SamMaskDecoderConfig, SamModel, SamPromptEncoderConfig, SamVisionConfig

    return SamModel(SamConfig(vision_config=SamVisionConfig(**vit, output_channels=256),
                              prompt_encoder_config=SamPromptEncoderConfig(image_size=vit["image_size"],
                                                                           patch_size=vit["patch_size"]),
                              mask_decoder_config=SamMaskDecoderConfig()))


def random_policy(name: str, s: dict, device: str, dtype: torch.dtype):
    """The policy of backbone ``name`` with random weights, made on ``device`` in ``dtype``."""
    from aurora_rl.config.schema import LoraConfig
    from aurora_rl.data.media_prep import BACKBONE_PREP
    from aurora_rl.model.backbones.weight_loading import empty_init, materialize_random
    from aurora_rl.model.build import apply_lora
    from aurora_rl.model.policy import AVSegPolicy, TokenIds
    from aurora_rl.model.sam_segmenter import SamSegmenter
    from aurora_rl.model.seg_projector import SegProjector

    with empty_init():
        llm, vision, audio = build_backbone(name, s)
        sam = build_sam(s["sam"])
    for module in (llm, vision, audio, sam):
        materialize_random(module, dtype, device)
    vision.requires_grad_(False)
    audio.requires_grad_(False)
    vocab = s["llm"]["vocab_size"]
    ids = TokenIds(seg=vocab - 3, video=vocab - 2, audio=vocab - 1, pad=0, eos=1)
    segmenter = SamSegmenter(sam)
    policy = AVSegPolicy(apply_lora(llm, LoraConfig()), vision, audio, SegProjector(llm.config.hidden_size,
                         segmenter.prompt_dim), segmenter, ids, s["mask"], BACKBONE_PREP[name])
    policy.to(device)
    for p in policy.parameters():
        p.data = p.data.to(dtype)
    return policy


def make_clip(name: str, s: dict, seed: int = 0):
    """A Ref-AVS clip as the backbone's preparation gives it: 10 frames, 10 s of audio padded as
    the backbone pads it, the backbone's audio features; masks at SAM's size."""
    from aurora_rl.data.audio_features import audio_features
    from aurora_rl.data.clip_sample import ClipSample
    from aurora_rl.data.media_prep import BACKBONE_PREP, prepare_waveform
    from aurora_rl.model.backbones import AUDIO_FEATURES

    rng = np.random.default_rng(seed)
    size, m = s["image"][name], s["mask"]
    audio = prepare_waveform(rng.uniform(-0.5, 0.5, 160_000).astype(np.float32), 16_000, BACKBONE_PREP[name])
    fbank = audio_features(audio, AUDIO_FEATURES[name], 16_000, 128)
    masks = (rng.random((10, m, m)) > 0.7).astype(np.uint8)
    return ClipSample(uid=f"clip{seed}_x_1", row=seed + 2, vid=f"clip{seed}", fid=1, split="train",
                      expression="the sounding object", frames=rng.random((10, 3, size, size), dtype=np.float32),
                      audio=audio, fbank=fbank.astype(np.float32), masks=masks, mask_valid=np.ones(10, dtype=bool),
                      is_null=False, frame_box=(0, 0, size, size))


def token_lists(policy, s: dict, seed: int = 0) -> tuple[list[int], list[int]]:
    """A prompt with the media placeholders and an answer ending in [SEG] (random words)."""
    g = torch.Generator().manual_seed(seed)
    ids, vocab = policy.ids, s["llm"]["vocab_size"]
    prompt = [ids.video, ids.audio] + torch.randint(2, vocab - 3, (s["prompt"],), generator=g).tolist()
    answer = torch.randint(2, vocab - 3, (s["answer"],), generator=g).tolist()
    answer[-2] = ids.seg
    return prompt, answer


def clip_inputs(clip, prompt: list[int], answers: list[list[int]]):
    """The PolicyInputs of ``answers`` to one clip (on the CPU, as the stages build them)."""
    from aurora_rl.data.clip_sample import collate_clips
    from aurora_rl.model.policy import PolicyInputs

    b = collate_clips([clip] * len(answers))
    return PolicyInputs([prompt] * len(answers), answers, b["frames"], b["fbank"], b["fbank_lengths"],
                        [clip.vid] * len(answers), None, b["frame_box"]), b


def deepspeed_engine(policy, stage_cfg, dtype: str):
    import deepspeed

    from learner.deepspeed_config import deepspeed_config

    params = [p for p in policy.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-5)
    engine, *_ = deepspeed.initialize(model=policy, optimizer=optimizer,
                                      config=deepspeed_config(stage_cfg, micro_batch=1, grad_accum=1, dtype=dtype))
    engine.train()
    return engine


# ------------------------------------------------------------------ the paths


@dataclass
class Run:
    device: str
    s: dict
    dtype: torch.dtype = torch.bfloat16
    reps: int = 3  # timed repetitions of the measured rows (after a warm-up)
    rows: list = field(default_factory=list)

    def sync(self) -> None:
        if self.device == "cuda":
            torch.cuda.synchronize()

    def peak_gb(self) -> float | None:
        return torch.cuda.max_memory_allocated() / 2**30 if self.device == "cuda" else None

    def release(self) -> None:
        gc.collect()
        if self.device == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()

    def path(self, backbone: str, name: str, fn) -> None:
        """Run one path: a row with ok, seconds, peak memory and what ``fn`` reports."""
        self.release()
        start = time.perf_counter()
        try:
            note = fn()
            self.sync()
            ok = True
        except Exception as e:  # a failed path is a row of the table, and the exit status
            traceback.print_exc()
            note, ok = f"{type(e).__name__}: {str(e).splitlines()[0][:160] if str(e) else ''}", False
        seconds = time.perf_counter() - start
        self.rows.append((backbone, name, ok, seconds, self.peak_gb(), note))
        peak = self.peak_gb()
        print(f"[gpu-paths] {backbone} | {name} | {'ok' if ok else 'FAILED'} | {seconds:.1f} s | "
              f"{'-' if peak is None else f'{peak:.1f} GB'} | {note}", flush=True)
        self.release()


def run_backbone(run: Run, name: str) -> None:
    from aurora_rl.config import load_config

    s, device, dtype = run.s, run.device, run.dtype
    clip = make_clip(name, s)
    sft_cfg = load_config(ROOT / "configs" / "real" / "sft.yaml", [f"model.backbone={name}"])
    grpo_cfg = load_config(ROOT / "configs" / "real" / "grpo.yaml",
                           [f"model.backbone={name}", "objective.kl_coef=0.05"])

    def build():
        policy = random_policy(name, s, device, dtype)
        total = sum(p.numel() for p in policy.parameters())
        trainable = sum(p.numel() for p in policy.parameters() if p.requires_grad)
        return f"{total / 1e9:.2f} B parameters, {trainable / 1e9:.3f} B trainable"

    def sft(with_teacher: bool):
        def step():
            from learner.sft_step import sft_step

            policy = random_policy(name, s, device, dtype)
            teacher = copy.deepcopy(policy).eval().requires_grad_(False) if with_teacher else None
            prompt, answer = token_lists(policy, s)
            student, b = clip_inputs(clip, prompt, [answer])
            batch = {"student": student, "teacher": clip_inputs(clip, prompt, [answer[-4:]])[0],
                     "masks": b["masks"], "mask_valid": b["mask_valid"], "segment": torch.tensor([True])}
            engine = deepspeed_engine(policy, sft_cfg.trainer.deepspeed, "bfloat16")
            parts = sft_step(engine, teacher, batch, sft_cfg.loss, torch.device(device))
            engine.destroy()
            if not all(np.isfinite(v) for v in parts.values()):
                raise FloatingPointError(f"non-finite loss parts {parts}")
            tokens = len(prompt) + len(answer)
            return f"loss {parts['total']:.3f} (distill {parts['distill']:.3f}), {tokens} text tokens + media"
        return step

    def grpo():
        from aurora_rl.grpo.objective import step_batch
        from learner.grpo_step import learn_step

        policy = random_policy(name, s, device, dtype)
        reference = copy.deepcopy(policy).eval().requires_grad_(False)
        prompt, answer = token_lists(policy, s)
        answers = [answer, answer[: len(answer) // 2], answer[:-1]]
        inputs, b = clip_inputs(clip, prompt, answers)
        k = b["masks"].shape[1]
        batch = step_batch([np.array(a) for a in answers], [np.full(len(a), -2.0) for a in answers], [1.0, -1.0, 0.0],
                           b["masks"], b["mask_valid"], [0.5, 0.0, 0.5], policy.ids.seg, grpo_cfg.objective)
        engine = deepspeed_engine(policy, grpo_cfg.learner.deepspeed, "bfloat16")
        stats = learn_step(engine, reference, batch, lambda rows: select(inputs, rows), len(answers), None, grpo_cfg,
                           torch.device(device))
        engine.destroy()
        if stats["skipped"] or not np.isfinite(stats["loss"]):
            raise FloatingPointError(f"the step was skipped or not finite: {stats}")
        return f"loss {stats['loss']:.3f}, kl {stats['kl']:.2e}, mask dice {stats['mask_dice']:.3f}, {k} frames"

    def seg_pass():
        from aurora_rl.model.seg_pass import embed_clips, segment_answers

        policy = random_policy(name, s, device, dtype).eval()
        prompt, answer = token_lists(policy, s)
        clips = [clip, make_clip(name, s, seed=1)]
        batch, embeds = embed_clips(policy, [prompt, prompt], clips, torch.device(device))
        has, probs = segment_answers(policy, clips, batch, embeds, [0, 0, 0, 1], [answer, answer[:5], answer, answer],
                                     s["mask"])
        if has != [True, False, True, True] or not np.isfinite(probs.astype(np.float32)).all():
            raise AssertionError(f"[SEG] flags {has}")
        return f"{len(embeds[0])} prompt tokens per clip, masks {tuple(probs.shape)}"

    def evaluate():
        from aurora_rl.model.generation import answer_clip

        policy = random_policy(name, s, device, dtype).eval()
        prompt, _ = token_lists(policy, s)
        done = answer_clip(policy, IdText(), prompt, torch.from_numpy(clip.frames), torch.from_numpy(clip.fbank),
                           max_new_tokens=16, frame_box=clip.frame_box)
        return f"{len(done.token_ids)} tokens generated, masks {tuple(done.mask_logits.shape)}"

    def broadcast():
        from aurora_rl.weight_sync import BroadcastGroup, open_store, pack, plan_buckets, specs_of, unpack

        policy = random_policy(name, s, device, dtype)
        tensors = {n: p.detach() for n, p in policy.named_parameters() if p.requires_grad}
        buckets = plan_buckets(specs_of(tensors), 64 * 2**20)
        store = open_store("127.0.0.1", 1, 60.0)
        group = BroadcastGroup("127.0.0.1", store.port, 0, 1, "nccl" if device == "cuda" else "gloo", 60.0, store,
                               key_prefix="gpu-paths/")
        flats = [group.broadcast(pack(tensors, bucket, group.device)) for bucket in buckets]
        back = unpack(buckets, flats)
        if back.keys() != tensors.keys() or not all(torch.equal(back[n], t.cpu()) for n, t in tensors.items()):
            raise AssertionError("the unpacked weights differ from the packed ones")
        group.close()
        nbytes = sum(f.numel() * f.element_size() for f in flats)
        return f"{nbytes / 2**30:.2f} GiB in {len(buckets)} buckets on {group.device}"

    run.path(name, "build", build)
    run.path(name, "sft step (ZeRO-2, distillation)", sft(with_teacher=True))
    run.path(name, "reflective sft step", sft(with_teacher=False))
    run.path(name, "grpo learner step (KL, masks)", grpo)
    run.path(name, "[SEG] pass + SAM", seg_pass)
    run.path(name, "evaluation forward", evaluate)
    run.path(name, "broadcast buckets", broadcast)


def select(inputs, rows: list[int]):
    from aurora_rl.model.policy import PolicyInputs

    return PolicyInputs([inputs.prompt_ids[i] for i in rows], [inputs.answer_ids[i] for i in rows],
                        inputs.frames[rows], inputs.fbank[rows], inputs.fbank_lengths[rows],
                        [inputs.clip_keys[i] for i in rows], None, inputs.frame_box[rows])


class IdText:
    """The random-weight models have no tokenizer: answers are shown as their ids."""

    def decode(self, ids, **_) -> str:
        return " ".join(map(str, ids))


# ------------------------------------------------------------------ once per card


def parity(run: Run, name: str):
    """A tiny policy of ``name``'s structure, built in float32 on the CPU and copied to the device:
    outputs and every gradient agree within the dtype's bound (float32 and bf16)."""
    def check():
        tiny = sizes(tiny=True)
        torch.manual_seed(0)
        cpu = random_policy(name, tiny, "cpu", torch.float32).eval()  # no dropout: one function on both
        prompt, answer = token_lists(cpu, tiny)
        inputs, _ = clip_inputs(make_clip(name, tiny), prompt, [answer, answer[:-3]])
        ref = outputs_and_grads(cpu, inputs)
        worst = []
        for dtype in (torch.float32, torch.bfloat16):
            other = copy.deepcopy(cpu).to(run.device)
            for p in other.parameters():
                p.data = p.data.to(dtype)
            got = outputs_and_grads(other, inputs.to(run.device))
            if set(got) != set(ref):
                raise AssertionError(f"tensors missing on {run.device}: {sorted(set(ref) ^ set(got))[:5]}")
            scale = max(v.norm().item() for k, v in ref.items() if k.startswith("grad/"))
            gap, tensor = max(((ref[k] - got[k]).norm().item()
                               / max(ref[k].norm().item(), ZERO_GRAD * scale if k.startswith("grad/") else 1e-12), k)
                              for k in ref)
            if gap > PARITY_BOUNDS[dtype]:
                raise AssertionError(f"{dtype}: {tensor} differs by {gap:.2e} > {PARITY_BOUNDS[dtype]}")
            worst.append(f"{str(dtype).removeprefix('torch.')} worst {gap:.1e}")
            del other
        return f"{len(ref)} tensors; " + ", ".join(worst)
    return check


def outputs_and_grads(policy, inputs) -> dict[str, torch.Tensor]:
    """Outputs and gradients of one token + mask loss, as float32 on the CPU."""
    policy.zero_grad(set_to_none=True)
    out = policy(inputs)
    loss = (-(out.answer_logprobs * out.answer_mask).sum() / out.answer_mask.sum()
            + torch.nn.functional.binary_cross_entropy_with_logits(out.mask_logits, torch.zeros_like(out.mask_logits)))
    loss.backward()
    result = {"answer_logprobs": out.answer_logprobs, "mask_logits": out.mask_logits, "loss": loss,
              "seg_embedding": out.seg_embedding}
    result.update({f"grad/{n}": p.grad for n, p in policy.named_parameters() if p.grad is not None})
    return {k: v.detach().float().cpu() for k, v in result.items()}


def best_seconds(run: Run, fn) -> float:
    fn()  # warm-up
    times = []
    for _ in range(run.reps):
        run.sync()
        start = time.perf_counter()
        fn()
        run.sync()
        times.append(time.perf_counter() - start)
    return min(times)


@contextlib.contextmanager
def eager_attention(model: torch.nn.Module):
    """Every transformers config inside ``model`` set to eager attention for the block
    (FlopCounterMode cannot count SDPA with grouped KV heads on CUDA; eager does the same matmuls)."""
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


def throughput(run: Run):
    """The videollama2-av learner's forward + backward + AdamW step at batch 2: achieved TFLOP/s
    (FLOPs counted once with FlopCounterMode) against the card's best bf16 square matmul."""
    def measure():
        from torch.utils.flop_counter import FlopCounterMode

        from aurora_rl.model.mask_loss import mask_loss

        peak = 0.0
        for n in run.s["matmuls"]:
            a = torch.randn(n, n, device=run.device, dtype=torch.bfloat16)
            inner = 10 if n >= 4096 else 2
            peak = max(peak, 2 * n**3 * inner / best_seconds(run, lambda: [a @ a for _ in range(inner)]) / 1e12)
            del a
        name = "videollama2-av"
        policy = random_policy(name, run.s, run.device, run.dtype).train()
        params = [p for p in policy.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=1e-5, foreach=True)
        prompt, answer = token_lists(policy, run.s)
        inputs, b = clip_inputs(make_clip(name, run.s), prompt, [answer, answer])
        inputs, gt = inputs.to(run.device), b["masks"].to(run.device).float()

        def loss_of(out):
            ce = -(out.answer_logprobs * out.answer_mask).sum() / out.answer_mask.sum()
            return ce + mask_loss(out.mask_logits.float(), gt)[0]

        def step():
            optimizer.zero_grad(set_to_none=True)
            loss_of(policy(inputs)).backward()
            optimizer.step()

        with eager_attention(policy), FlopCounterMode(display=False) as counter:
            loss_of(policy(inputs)).backward()
        seconds = best_seconds(run, step)
        achieved = counter.get_total_flops() / seconds / 1e12
        return f"{achieved:.1f} TFLOP/s achieved of a {peak:.1f} TFLOP/s bf16 matmul peak ({achieved / peak:.0%}), " \
               f"{seconds:.3f} s per step"
    return measure


def sam_cache(run: Run, image_size: int):
    """SAM ViT-H on one clip (10 frames, G=3 [SEG] prompts): encoding the frames every time against
    the per-clip cache of frozen image embeddings the rollout actors and learner use."""
    def measure():
        from aurora_rl.model.backbones.weight_loading import empty_init, materialize_random
        from aurora_rl.model.sam_segmenter import SamSegmenter

        with empty_init():
            sam = build_sam(dict(run.s["sam"], image_size=image_size))
        materialize_random(sam, run.dtype, run.device)
        seg = SamSegmenter(sam.eval(), cache_size=4)
        frames = torch.rand(10, 3, image_size, image_size, device=run.device)
        prompts = torch.randn(3, 1, seg.prompt_dim, device=run.device, dtype=run.dtype)
        with torch.no_grad():
            full = best_seconds(run, lambda: seg.decode_prompts(seg.encode(frames), prompts, (image_size,) * 2))
            cached = best_seconds(run, lambda: seg.decode_prompts(seg.encode(frames, cache_key="clip"), prompts,
                                                                  (image_size,) * 2))
        return f"{1 / full:.2f} clips/s encoding every clip, {1 / cached:.2f} clips/s from the cache"
    return measure


# ------------------------------------------------------------------ main


def one_process_group(device: str) -> None:
    """torch.distributed of this process alone (DeepSpeed's engine and the learner's flag need one)."""
    import torch.distributed as dist

    if not dist.is_initialized():
        os.environ.update(MASTER_ADDR="127.0.0.1", RANK="0", WORLD_SIZE="1", LOCAL_RANK="0")
        dist.init_process_group("nccl" if device == "cuda" else "gloo", store=dist.HashStore(), rank=0, world_size=1)


def table(run: Run, title: str) -> str:
    lines = [f"### {title}", "", "| backbone | path | ok | seconds | peak GB | measured |",
             "|---|---|---|---:|---:|---|"]
    for backbone, name, ok, seconds, peak, note in run.rows:
        lines.append(f"| {backbone} | {name} | {'yes' if ok else '**NO**'} | {seconds:.1f} | "
                     f"{'-' if peak is None else f'{peak:.1f}'} | {note} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--tiny", action="store_true", help="tiny sizes of the same structures (the CPU smoke run)")
    parser.add_argument("--backbones", nargs="+", default=list(BACKBONES), choices=BACKBONES)
    parser.add_argument("--skip-measures", action="store_true", help="the paths only: no TFLOP/s or SAM rows")
    parser.add_argument("--out", type=Path, default=None, help="also write the markdown table here")
    args = parser.parse_args()
    if args.device == "cpu":
        os.environ.setdefault("DS_ACCELERATOR", "cpu")
    torch.backends.cuda.matmul.allow_tf32 = False  # parity compares float32 as float32
    torch.backends.cudnn.allow_tf32 = False
    one_process_group(args.device)
    run = Run(args.device, sizes(args.tiny), reps=1 if args.tiny else 3)
    card = torch.cuda.get_device_name() if args.device == "cuda" else "CPU"
    for name in args.backbones:
        run_backbone(run, name)
    for name in args.backbones:
        run.path(name, "parity with the CPU (tiny, float32 + bf16)", parity(run, name))
    if not args.skip_measures:
        run.path("videollama2-av", "learner step throughput (batch 2)", throughput(run))
        for size in run.s["sam_sizes"]:
            run.path("-", f"SAM at {size} px: cached vs not", sam_cache(run, size))
    text = table(run, f"Every torch path on {card} (torch {torch.__version__}, bf16"
                      f"{', tiny sizes' if args.tiny else ', released sizes, random weights'})")
    print(text, flush=True)
    if args.out:
        args.out.write_text(text)
    sys.exit(0 if all(ok for _, _, ok, *_ in run.rows) else 1)


if __name__ == "__main__":
    main()
