"""Methods added to vLLM's worker (``worker_extension_cls``) so weights arrive as tensors.

The engine calls them with ``llm.collective_rpc("reload_hf_layers", args=(...))``: a named
method, not a pickled callable, so no ``VLLM_ALLOW_INSECURE_SERIALIZATION`` is needed. On CPU
vLLM repacks linear weights for oneDNN, so ``model.load_weights`` alone fails; a layer-wise
reload (rebuild the layer, load, re-run its weight processing) is what works.

The worker's own ``reload_weights`` walks every layer of the model: given a subset of the
weights it keeps the other layers as they are, but warns for each of them ("Failed to load
weights") and for every weight not given, at every policy version. ``reload_hf_layers`` runs
the same layer-wise steps (``vllm.model_executor.model_loader.reload``) on the given layers
only; the others are not touched.
"""

from __future__ import annotations

from aurora_rl.model.changed_weights import missing_shards, vllm_layer


class WeightUpdateExtension:
    def load_hf_weights(self, names: list[str], tensors: list) -> int:
        """Reload the model from full Hugging Face-named weights; returns how many were given."""
        self.reload_weights(weights_iterator=list(zip(names, tensors)))
        return len(names)

    def packed_modules(self) -> dict[str, list[str]]:
        """The model's fused layers -> the Hugging Face modules each holds (``qkv_proj`` -> q, k, v)."""
        return dict(getattr(self.model_runner.get_model(), "packed_modules_mapping", {}))

    def reload_hf_layers(self, names: list[str], tensors: list) -> list[str]:
        """Reload the layers these Hugging Face-named weights load into; returns the vLLM
        parameters loaded. Each layer must be given whole (every shard of a fused one): the
        rest of a layer would be rebuilt uninitialised."""
        from vllm.config import set_current_vllm_config
        from vllm.model_executor.model_loader.reload import finalize_layerwise_reload, initialize_layerwise_reload

        model = self.model_runner.get_model()
        packed = self.packed_modules()
        missing = missing_shards(names, packed)
        if missing:
            raise ValueError(f"a fused layer would be reloaded without {missing[:4]}: send every shard")
        paths = list(dict.fromkeys(vllm_layer(n, packed) for n in names))
        absent = [p for p in paths if not _has_submodule(model, p)]
        if absent:  # checked before any layer is touched: a failed load would leave layers half rebuilt
            raise KeyError(f"the vLLM model has no layers {absent[:4]} for these weights")
        layers = [model.get_submodule(p) for p in paths]
        with set_current_vllm_config(self.vllm_config):
            for layer in layers:
                initialize_layerwise_reload(layer)
            loaded = model.load_weights(zip(names, tensors))
            for layer in layers:
                finalize_layerwise_reload(layer, self.vllm_config.model_config)
        # what the worker's reload_weights invalidates after a reload
        self.model_runner.reset_lora_state()
        self.model_runner.reset_encoder_cache()
        self.model_runner.reset_mm_cache()
        return sorted(loaded)


def _has_submodule(model, path: str) -> bool:
    try:
        model.get_submodule(path)
    except AttributeError:
        return False
    return True
