"""Which merged LLM tensors an update changes, and their grouping into vLLM layers."""

from __future__ import annotations

import torch

from aurora_rl.model.build import build_tiny_policy
from aurora_rl.model.changed_weights import changed_merged_names, missing_shards, vllm_layer
from aurora_rl.model.checkpoint import merged_llm_sources, merged_llm_state_dict, trainable_state
from tests.model.tiny_policy import SHAPE, make_policy, tiny_model_config

QWEN2_PACKED = {"qkv_proj": ["q_proj", "k_proj", "v_proj"], "gate_up_proj": ["gate_proj", "up_proj"]}

# a LoRA layer on q_proj and v_proj, the rest as plain tensors (sources hand-written)
SOURCES = {
    "model.embed_tokens.weight": {"embed"},
    "model.layers.0.self_attn.q_proj.weight": {"q.w", "q.A", "q.B"},
    "model.layers.0.self_attn.q_proj.bias": {"q.b"},
    "model.layers.0.self_attn.k_proj.weight": {"k.w"},
    "model.layers.0.self_attn.k_proj.bias": {"k.b"},
    "model.layers.0.self_attn.v_proj.weight": {"v.w", "v.A", "v.B"},
    "model.layers.0.self_attn.v_proj.bias": {"v.b"},
    "model.layers.0.self_attn.o_proj.weight": {"o.w"},
    "model.layers.0.mlp.gate_proj.weight": {"gate.w"},
    "model.layers.0.mlp.up_proj.weight": {"up.w"},
    "model.layers.0.mlp.down_proj.weight": {"down.w"},
    "model.norm.weight": {"norm.w"},
    "lm_head.weight": {"head.w"},
}
QKV = [f"model.layers.0.self_attn.{m}_proj.{p}" for m in "qkv" for p in ("weight", "bias")]


def test_vllm_layer_renames_fused_shards_only():
    assert vllm_layer("model.layers.3.self_attn.k_proj.bias", QWEN2_PACKED) == "model.layers.3.self_attn.qkv_proj"
    assert vllm_layer("model.layers.3.mlp.up_proj.weight", QWEN2_PACKED) == "model.layers.3.mlp.gate_up_proj"
    assert vllm_layer("model.layers.3.mlp.down_proj.weight", QWEN2_PACKED) == "model.layers.3.mlp.down_proj"
    assert vllm_layer("model.norm.weight", QWEN2_PACKED) == "model.norm"
    assert vllm_layer("lm_head.weight", QWEN2_PACKED) == "lm_head"
    assert vllm_layer("q_proj.weight", QWEN2_PACKED) == "qkv_proj"
    assert vllm_layer("model.layers.0.self_attn.q_proj.weight", {}) == "model.layers.0.self_attn.q_proj"


def test_a_lora_factor_sends_its_whole_fused_layer():
    assert changed_merged_names({"q.A"}, SOURCES, QWEN2_PACKED) == QKV
    assert changed_merged_names({"v.B", "q.A"}, SOURCES, QWEN2_PACKED) == QKV  # one layer, sent once
    assert changed_merged_names({"up.w"}, SOURCES, QWEN2_PACKED) == ["model.layers.0.mlp.gate_proj.weight",
                                                                        "model.layers.0.mlp.up_proj.weight"]
    # unfused: the tensor alone, in the merged order whatever the order received
    assert changed_merged_names({"head.w", "embed", "down.w"}, SOURCES, QWEN2_PACKED) == [
        "model.embed_tokens.weight", "model.layers.0.mlp.down_proj.weight", "lm_head.weight"]
    assert changed_merged_names({"vision.stem.weight", "projector.w"}, SOURCES, QWEN2_PACKED) == []
    assert changed_merged_names(set().union(*SOURCES.values()), SOURCES, QWEN2_PACKED) == list(SOURCES)
    # without fusion the LoRA layer goes alone, its unchanged bias with it (one vLLM layer)
    assert changed_merged_names({"q.A"}, SOURCES, {}) == QKV[:2]


def test_missing_shards_names_what_a_fused_layer_lacks():
    assert missing_shards(QKV, QWEN2_PACKED) == []
    assert missing_shards(["model.layers.0.self_attn.q_proj.weight", "model.norm.weight"], QWEN2_PACKED) == [
        "model.layers.0.self_attn.k_proj", "model.layers.0.self_attn.v_proj"]
    assert missing_shards(["model.layers.1.mlp.gate_proj.weight"], QWEN2_PACKED) == ["model.layers.1.mlp.up_proj"]
    assert missing_shards(["model.layers.1.mlp.down_proj.weight"], QWEN2_PACKED) == []


def test_lora_policy_update_changes_qkv_and_the_fully_trained_modules_only():
    """q/v LoRA with lm_head and embed_tokens trained in full (the default LoRA config)."""
    policy, _ = make_policy(seed=2)
    sources = merged_llm_sources(policy)
    merged = merged_llm_state_dict(policy)
    assert list(sources) == list(merged)
    prefix = "llm.base_model.model.model.layers.1.self_attn.q_proj"
    assert sources["model.layers.1.self_attn.q_proj.weight"] == {
        f"{prefix}.base_layer.weight", f"{prefix}.lora_A.default.weight", f"{prefix}.lora_B.default.weight"}
    assert sources["lm_head.weight"] == {"llm.base_model.model.lm_head.modules_to_save.default.weight"}
    assert set().union(*sources.values()) <= policy.state_dict().keys()

    received = trainable_state(policy).keys()  # LoRA, lm_head, embed_tokens, encoders, projector, SAM decoder
    changed = changed_merged_names(received, sources, QWEN2_PACKED)
    layers = policy.base_lm.config.num_hidden_layers
    qkv = [f"model.layers.{i}.self_attn.{m}_proj.{p}" for i in range(layers) for m in "qkv" for p in ("weight", "bias")]
    assert changed == ["model.embed_tokens.weight", *qkv, "lm_head.weight"]
    frozen = [n for n in merged if n not in changed]
    assert frozen and all(any(k in n for k in ("o_proj", "mlp", "norm")) for n in frozen)

    subset = merged_llm_state_dict(policy, names=set(changed))
    assert list(subset) == changed
    assert all(torch.equal(subset[n], merged[n]) for n in changed)  # the LoRA merge, as in the full export


def test_fully_trained_llm_changes_every_tensor_and_encoders_none():
    """The tiny configs train the LLM in full (``lora.enabled: false``)."""
    cfg = tiny_model_config()
    cfg.lora.enabled = False
    policy = build_tiny_policy(cfg, make_policy()[1], SHAPE, seed=3)
    sources = merged_llm_sources(policy)
    assert all(srcs == {f"llm.{name}"} for name, srcs in sources.items())
    received = trainable_state(policy).keys()
    assert changed_merged_names(received, sources, QWEN2_PACKED) == list(merged_llm_state_dict(policy))
    not_llm = [n for n in received if not n.startswith("llm.")]
    assert not_llm and changed_merged_names(not_llm, sources, QWEN2_PACKED) == []
