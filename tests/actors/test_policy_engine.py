"""PolicyEngine.load_trainable: vLLM samples with exactly the weights given, load after load.

The merged weights are handed to vLLM uncopied, so vLLM's unrepacked weights may share storage
with the HF modules (the same values; both change only in ``load_trainable``). Repeated loads
must still leave vLLM and the HF modules equal.
"""

from __future__ import annotations

import pytest
import torch

from aurora_rl.model.build import MediaShape
from aurora_rl.model.checkpoint import save_policy
from tests.model.tiny_policy import make_inputs, make_policy, tiny_model_config


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    policy, tok = make_policy(seed=5, lora_b_std=0.1)
    return save_policy(policy, tok, tiny_model_config(), MediaShape(128, 32, 64), tmp_path_factory.mktemp("c") / "ckpt")


def engine_actor(checkpoint: str, work_dir: str):
    import ray

    @ray.remote(num_cpus=1)
    class EngineActor:
        def __init__(self):
            from actors.policy_engine import PolicyEngine

            self.engine = PolicyEngine(checkpoint, work_dir, kv_cache_gib=1.0)
            self.tok = self.engine.tokenizer

        def vllm_first_token(self) -> dict[int, float]:
            from vllm import SamplingParams

            batch = make_inputs(self.tok, batch=1, with_answer=False)
            embeds = self.engine.policy.prompt_embeds(batch.prompt_ids, batch.frames, batch.fbank)
            out = self.engine.llm.generate([{"prompt_embeds": embeds[0]}], SamplingParams(
                temperature=0.0, max_tokens=1, logprobs=10), use_tqdm=False)
            return {int(t): float(lp.logprob) for t, lp in out[0].outputs[0].logprobs[0].items()}

        def hf_first_token(self) -> list[float]:
            batch = make_inputs(self.tok, batch=1, with_answer=False)
            with torch.no_grad():
                return self.engine.policy(batch, with_masks=False).first_token_logits.log_softmax(-1)[0].tolist()

        def complete_too_long(self) -> str:
            import numpy as np

            from actors.policy_engine import PromptTooLong
            from aurora_rl.config.schema import SamplingConfig
            from aurora_rl.data.clip_sample import ClipSample

            batch = make_inputs(self.tok, batch=1, with_answer=False)
            clip = ClipSample("clip_dog_1", 7, "clip", 0, "train", "the dog " * 300, batch.frames[0].numpy(),
                              np.zeros(16000, np.float32), batch.fbank[0].numpy(), np.zeros((10, 32, 32), np.uint8),
                              np.ones(10, bool), False)
            try:
                self.engine.complete([clip], SamplingConfig(max_new_tokens=8))
            except PromptTooLong as e:
                return str(e)
            return "accepted"

        def load_new_weights(self, seed: int) -> None:
            g = torch.Generator().manual_seed(seed)
            state = {n: p.detach() + 0.1 * torch.randn(p.shape, generator=g)
                     for n, p in self.engine.policy.named_parameters() if p.dtype.is_floating_point}
            self.engine.load_trainable(state, version=seed)

    return EngineActor.remote()


def test_vllm_samples_the_loaded_weights_load_after_load(ray_node, checkpoint, tmp_path):
    import ray

    actor = engine_actor(str(checkpoint), str(tmp_path / "work"))
    try:
        seen = [ray.get(actor.vllm_first_token.remote(), timeout=300)]
        # a prompt past the engine's context is a named error before vLLM sees it
        assert ray.get(actor.complete_too_long.remote()).startswith("clip_dog_1@7: a 6")
        for version in (1, 2, 3):
            ray.get(actor.load_new_weights.remote(version))
            vllm, hf = ray.get([actor.vllm_first_token.remote(), actor.hf_first_token.remote()])
            assert vllm not in seen  # new weights every time
            for token, logprob in vllm.items():  # vLLM holds the merged new weights (LoRA included)
                assert logprob == pytest.approx(hf[token], abs=1e-3)
            seen.append(vllm)
    finally:
        ray.kill(actor)
