"""Shared pieces of the pretrained-backbone tests: a tiny Qwen2 tokenizer in the released format,
the policy config, one SFT step, and sampling the exported LLM with vLLM from ``prompt_embeds``."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from aurora_rl.config.schema import ModelConfig, SFTLossConfig
from aurora_rl.data.synthetic import synthetic_words
from aurora_rl.model.policy import PolicyInputs
from aurora_rl.prompts.answer_format import FORMAT_WORDS, build_prompt, compose_answer


def write_qwen2_tokenizer(folder: Path):
    """A byte-level BPE tokenizer saved as ``Qwen2Tokenizer`` with Qwen's special tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=420, special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    corpus = " ".join(sorted(synthetic_words()) + list(FORMAT_WORDS) + "guitar red left sounds".split())
    core.train_from_iterator([corpus] * 4, trainer)
    PreTrainedTokenizerFast(tokenizer_object=core, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                            unk_token="<|endoftext|>").save_pretrained(folder)
    config_path = folder / "tokenizer_config.json"
    config = json.loads(config_path.read_text())
    config["tokenizer_class"] = "Qwen2Tokenizer"
    config_path.write_text(json.dumps(config, indent=2))
    return AutoTokenizer.from_pretrained(folder, local_files_only=True)


def model_config(backbone: str, path: Path) -> ModelConfig:
    cfg = ModelConfig(backbone=backbone, path=str(path))
    cfg.sam.input_size = 64
    cfg.lora.train_encoders = False
    return cfg


def make_inputs(tok, frames: torch.Tensor, features: torch.Tensor, lengths: torch.Tensor) -> PolicyInputs:
    b = frames.shape[0]
    prompt = tok(build_prompt("the red guitar on the left ."), add_special_tokens=False).input_ids
    answer = tok(compose_answer("a red guitar on the left .", "the guitar sounds .", "the red guitar .", "guitar"),
                 add_special_tokens=False).input_ids
    return PolicyInputs(prompt_ids=[prompt] * b, answer_ids=[answer] * b, frames=frames, fbank=features,
                        fbank_lengths=lengths, clip_keys=[f"clip{i}" for i in range(b)])


def sft_step(policy, batch: PolicyInputs, mask_size: int) -> dict:
    """One SFT step (CE + mask BCE/Dice, AdamW); returns the loss parts and which parts changed."""
    from aurora_rl.model.sft_loss import sft_loss

    params = {n: p for n, p in policy.named_parameters() if p.requires_grad}
    before = {n: p.detach().clone() for n, p in policy.named_parameters()}
    optimizer = torch.optim.AdamW(params.values(), lr=1e-2)
    out = policy(batch)
    gt = torch.zeros(out.mask_logits.shape)
    gt[..., mask_size // 4: mask_size // 2, : mask_size // 3] = 1
    loss, parts = sft_loss(out, gt, torch.ones(gt.shape[:2], dtype=torch.bool), SFTLossConfig(distill=0.0))
    loss.backward()
    optimizer.step()
    changed = {n for n, p in policy.named_parameters() if not torch.equal(before[n], p.detach())}
    return {"parts": parts, "changed": changed, "trainable": set(params)}


def sample_with_vllm(folder: Path, embeds: list[torch.Tensor], max_tokens: int = 8):
    import ray

    from tests.vllm_remote import start_engine_actor

    engine = start_engine_actor(str(folder))
    try:
        return ray.get(engine.generate.remote(embeds, n=2, max_tokens=max_tokens, temperature=1.0, logprobs=1),
                       timeout=300)
    finally:
        ray.kill(engine)
