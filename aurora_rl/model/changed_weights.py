"""Which merged LLM tensors a weight update changes, grouped as vLLM reloads them.

The learner broadcasts only its trainable parameters. A merged Hugging Face tensor changes
when any parameter it is computed from arrives (``checkpoint.merged_llm_sources``: a LoRA
layer's A or B -> that layer's merged base weight; a fully trained module -> its own tensors);
tensors of frozen modules never do.

vLLM reloads weights a layer (module) at a time: it rebuilds the layer's parameters, loads
what it was given, then re-runs the layer's weight processing (on CPU: the oneDNN repack of a
linear layer). A layer given only part of its tensors is rebuilt with the rest uninitialised
(``vllm/model_executor/model_loader/reload/layerwise.py``, "Delayed processing"), and vLLM
fuses some Hugging Face modules into one layer (``q_proj``, ``k_proj``, ``v_proj`` ->
``qkv_proj``; the model class's ``packed_modules_mapping``). So every tensor of a vLLM layer
travels when any of them changes.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping


def vllm_layer(hf_name: str, packed_modules: Mapping[str, list[str]]) -> str:
    """The vLLM module that loads the Hugging Face tensor ``hf_name``.

    ``model.layers.0.self_attn.k_proj.bias`` -> ``model.layers.0.self_attn.qkv_proj`` when
    ``packed_modules`` maps ``qkv_proj`` to ``[q_proj, k_proj, v_proj]``; an unfused module
    keeps its name (``model.norm.weight`` -> ``model.norm``).
    """
    module = hf_name.rpartition(".")[0]
    parent, _, leaf = module.rpartition(".")
    for fused, shards in packed_modules.items():
        if leaf in shards:
            return f"{parent}.{fused}" if parent else fused
    return module


def changed_merged_names(received: Collection[str], sources: Mapping[str, Collection[str]],
                         packed_modules: Mapping[str, list[str]]) -> list[str]:
    """The merged tensors to hand to vLLM for an update of the parameters ``received``.

    Args:
        received: policy parameter names whose new values arrived.
        sources: merged name -> the policy parameter names it is computed from, in the merged
            state dict's order (``checkpoint.merged_llm_sources``).
        packed_modules: vLLM's fused module -> the Hugging Face modules it holds.
    Returns:
        Merged names in ``sources``' order: every tensor of each vLLM layer that holds at least
        one changed tensor.
    """
    received = set(received)
    layers = {vllm_layer(name, packed_modules) for name, srcs in sources.items() if not received.isdisjoint(srcs)}
    return [name for name in sources if vllm_layer(name, packed_modules) in layers]


def missing_shards(hf_names: Collection[str], packed_modules: Mapping[str, list[str]]) -> list[str]:
    """The Hugging Face modules a fused vLLM layer would be reloaded without: for each fused layer
    ``hf_names`` reach, the shards none of them belong to (empty when every layer is whole)."""
    given = {name.rpartition(".")[0] for name in hf_names}
    missing = []
    for layer in dict.fromkeys(vllm_layer(name, packed_modules) for name in hf_names):
        parent, _, leaf = layer.rpartition(".")
        for shard in packed_modules.get(leaf, ()):
            module = f"{parent}.{shard}" if parent else shard
            if module not in given:
                missing.append(module)
    return missing
