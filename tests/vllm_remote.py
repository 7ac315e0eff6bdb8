"""A vLLM engine in its own Ray actor process, for tests (keeps vLLM's thread settings out of pytest)."""

from __future__ import annotations


def start_engine_actor(model_dir: str, max_model_len: int = 512):
    import ray

    @ray.remote(num_cpus=1)
    class EngineActor:
        def __init__(self, model_dir):
            from actors.vllm_engine import make_llm

            self.llm = make_llm(model_dir, max_model_len=max_model_len, kv_cache_gib=1)

        def generate(self, prompt_embeds, n=1, max_tokens=16, temperature=0.0, top_p=1.0, logprobs=0, seed=0):
            from vllm import SamplingParams

            params = SamplingParams(n=n, temperature=temperature, top_p=top_p, max_tokens=max_tokens,
                                    logprobs=logprobs, seed=seed, ignore_eos=True)
            outs = self.llm.generate([{"prompt_embeds": e} for e in prompt_embeds], params, use_tqdm=False)
            return [
                [{"token_ids": list(c.token_ids),
                  "logprobs": [{int(t): float(lp.logprob) for t, lp in step.items()} for step in c.logprobs]}
                 for c in o.outputs]
                for o in outs
            ]

    return EngineActor.remote(model_dir)
