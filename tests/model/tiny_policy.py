"""A tiny random policy and inputs for model tests."""

from __future__ import annotations

import torch

from aurora_rl.config.schema import ModelConfig
from aurora_rl.data.synthetic import synthetic_words
from aurora_rl.model.build import MediaShape, build_tiny_policy
from aurora_rl.model.policy import PolicyInputs
from aurora_rl.model.tokenizer import build_word_tokenizer
from aurora_rl.prompts.answer_format import build_prompt, compose_answer

SHAPE = MediaShape(fbank_bins=128, mask_size=32, image_size=64)


def tiny_model_config() -> ModelConfig:
    cfg = ModelConfig()
    cfg.sam.input_size = 64
    return cfg


def make_policy(seed: int = 0, lora_b_std: float = 0.05):
    """Policy with non-zero LoRA B (so LoRA changes outputs and gets gradients through A too)."""
    tok = build_word_tokenizer(synthetic_words())
    policy = build_tiny_policy(tiny_model_config(), tok, SHAPE, seed=seed)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in policy.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=g) * lora_b_std)
    return policy, tok


def make_inputs(tok, batch: int = 2, with_answer: bool = True, seed: int = 0) -> PolicyInputs:
    g = torch.Generator().manual_seed(seed)
    prompt = tok(build_prompt("the red guitar on the left ."), add_special_tokens=False).input_ids
    answer = tok(compose_answer("a red guitar on the left .", "the guitar sounds .", "the red guitar .", "guitar"),
                 add_special_tokens=False).input_ids
    return PolicyInputs(
        prompt_ids=[prompt] * batch,
        answer_ids=[answer if with_answer else []] * batch,
        frames=torch.rand(batch, 10, 3, 64, 64, generator=g),
        fbank=torch.randn(batch, 120, 128, generator=g),
        fbank_lengths=torch.tensor([120] + [90] * (batch - 1)),
        clip_keys=[f"clip{i}" for i in range(batch)],
    )
