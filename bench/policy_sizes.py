"""Random-init policies of the sizes the benchmarks compare, written as checkpoints.

``tiny`` is the tiny GRPO configs' LLM (hidden 128, 2 layers); ``0.5b`` has Qwen2-0.5B's decoder
shape (hidden 896, 24 layers, 14 heads, 2 KV heads, MLP 4864) with the synthetic benchmark's
word vocabulary, so about 0.36B LLM parameters (Qwen2-0.5B's other 0.14B are its 152k-token
embedding). Both use the tiny backbone's encoders and tiny SAM.
"""

from __future__ import annotations

from pathlib import Path

SIZES = {
    "tiny": dict(hidden_size=128, num_layers=2, num_heads=4, num_kv_heads=2, intermediate_size=256),
    "0.5b": dict(hidden_size=896, num_layers=24, num_heads=14, num_kv_heads=2, intermediate_size=4864),
}


def write_checkpoint(size: str, folder: Path, dtype: str = "bfloat16", lora: bool = False) -> tuple[Path, float]:
    """A random-init tiny-backbone policy of ``size``; returns (folder, LLM parameters in millions)."""
    from aurora_rl.config.schema import ModelConfig, TinyBackboneConfig
    from aurora_rl.data.synthetic import synthetic_words
    from aurora_rl.model.build import MediaShape, build_tiny_policy
    from aurora_rl.model.checkpoint import save_policy
    from aurora_rl.model.tokenizer import build_word_tokenizer

    cfg = ModelConfig(dtype=dtype, tiny=TinyBackboneConfig(**SIZES[size]))
    cfg.lora.enabled = lora
    cfg.sam.input_size = 64
    tok = build_word_tokenizer(synthetic_words())
    policy = build_tiny_policy(cfg, tok, MediaShape(), seed=0)
    params = sum(p.numel() for n, p in policy.base_lm.named_parameters() if "lora_" not in n) / 1e6
    save_policy(policy, tok, cfg, MediaShape(), folder)
    return folder, params
