"""vLLM's environment: KV cache capped, in-process engine, threads placed by the OS unless asked otherwise."""

from __future__ import annotations

import os

from actors.vllm_engine import configure_environment


def test_threads_are_unbound_by_default_and_a_choice_is_kept(monkeypatch):
    for key in ("VLLM_CPU_OMP_THREADS_BIND", "VLLM_CPU_KVCACHE_SPACE", "VLLM_ENABLE_V1_MULTIPROCESSING"):
        monkeypatch.delenv(key, raising=False)
    configure_environment(kv_cache_gib=1.4)
    # vLLM's "auto" would pin every engine of the machine to the same core(s)
    assert os.environ["VLLM_CPU_OMP_THREADS_BIND"] == "nobind"
    assert os.environ["VLLM_CPU_KVCACHE_SPACE"] == "1" and os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] == "0"
    configure_environment(kv_cache_gib=2, cpu_threads="0-1")
    assert os.environ["VLLM_CPU_OMP_THREADS_BIND"] == "0-1"  # the config's choice wins
    monkeypatch.setenv("VLLM_CPU_OMP_THREADS_BIND", "auto")
    configure_environment(kv_cache_gib=2)
    assert os.environ["VLLM_CPU_OMP_THREADS_BIND"] == "auto"  # and so does the user's environment
