"""Methods added to vLLM's worker (``worker_extension_cls``) so weights arrive as tensors.

The engine calls them with ``llm.collective_rpc("load_hf_weights", args=(...))``: a named
method, not a pickled callable, so no ``VLLM_ALLOW_INSECURE_SERIALIZATION`` is needed. On CPU
vLLM repacks linear weights for oneDNN, so ``model.load_weights`` fails; the worker's
``reload_weights`` (layer-wise reload with re-processing) is what works.
"""

from __future__ import annotations


class WeightUpdateExtension:
    def load_hf_weights(self, names: list[str], tensors: list) -> int:
        """Reload the model from full Hugging Face-named weights; returns how many were given."""
        self.reload_weights(weights_iterator=list(zip(names, tensors)))
        return len(names)
