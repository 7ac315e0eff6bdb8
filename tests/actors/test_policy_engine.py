"""PolicyEngine.load_trainable: vLLM samples with exactly the weights given, load after load.

The merged weights are handed to vLLM uncopied, so vLLM's unrepacked weights may share storage
with the HF modules (the same values; both change only in ``load_trainable``). Repeated loads
must still leave vLLM and the HF modules equal. vLLM is given only the layers an update
changes: after several such updates it must sample as after a full reload of every weight.
"""

from __future__ import annotations

import pytest
import torch

from aurora_rl.model.build import MediaShape, build_tiny_policy
from aurora_rl.model.checkpoint import merged_llm_state_dict, save_policy, trainable_state
from tests.model.tiny_policy import make_inputs, make_policy, tiny_model_config


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """q/v LoRA, lm_head and embed_tokens trained in full (the default LoRA config)."""
    policy, tok = make_policy(seed=5, lora_b_std=0.1)
    return save_policy(policy, tok, tiny_model_config(), MediaShape(128, 32, 64), tmp_path_factory.mktemp("c") / "ckpt")


@pytest.fixture(scope="module")
def full_llm_checkpoint(tmp_path_factory):
    """The LLM trained in full, as the tiny configs do (``lora.enabled: false``)."""
    cfg = tiny_model_config()
    cfg.lora.enabled = False
    tok = make_policy()[1]
    policy = build_tiny_policy(cfg, tok, MediaShape(128, 32, 64), seed=6)
    return save_policy(policy, tok, cfg, MediaShape(128, 32, 64), tmp_path_factory.mktemp("f") / "ckpt")


def trained_and_merged(checkpoint) -> tuple[list[str], dict[str, torch.Tensor]]:
    """What the learner broadcasts for this checkpoint (its trainable parameters' names), and
    its merged LLM tensors."""
    from aurora_rl.model.checkpoint import load_policy

    policy = load_policy(checkpoint)[0]
    return list(trainable_state(policy)), merged_llm_state_dict(policy)


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

        def sample_and_score(self, temperature: float, top_p: float) -> list[dict]:
            """G completions of one clip sampled by vLLM, each token with vLLM's recorded
            log-probability and the learner's of the same tokens by the same weights: under the
            sampling settings (the GRPO forward) and under the raw softmax (SFT's forward)."""
            import numpy as np

            from aurora_rl.config.schema import SamplingConfig
            from aurora_rl.data.clip_sample import ClipSample, collate_clips
            from aurora_rl.model.policy import PolicyInputs

            batch = make_inputs(self.tok, batch=1, with_answer=False, seed=3)
            clip = ClipSample("clip_dog_1", 7, "clip", 0, "train", "the dog on the left", batch.frames[0].numpy(),
                              np.zeros(16000, np.float32), batch.fbank[0].numpy(), np.zeros((10, 32, 32), np.uint8),
                              np.ones(10, bool), False)
            sampling = SamplingConfig(group_size=6, temperature=temperature, top_p=top_p, max_new_tokens=12)
            group = self.engine.complete([clip], sampling, seed=11)[0]
            clips = collate_clips([clip] * len(group))
            inputs = PolicyInputs([self.engine.prompt_ids(clip.expression)] * len(group), [c.token_ids for c in group],
                                  clips["frames"], clips["fbank"], clips["fbank_lengths"],
                                  frame_box=clips["frame_box"])
            with torch.no_grad():
                processed = self.engine.policy(inputs, with_masks=False, sampling=sampling).answer_logprobs
                raw = self.engine.policy(inputs, with_masks=False).answer_logprobs
            return [{"tokens": c.token_ids, "vllm": c.logprobs, "processed": processed[i, :len(c.token_ids)].tolist(),
                     "raw": raw[i, :len(c.token_ids)].tolist()} for i, c in enumerate(group)]

        def load_new_weights(self, seed: int) -> None:
            g = torch.Generator().manual_seed(seed)
            state = {n: p.detach() + 0.1 * torch.randn(p.shape, generator=g)
                     for n, p in self.engine.policy.named_parameters() if p.dtype.is_floating_point}
            self.engine.load_trainable(state, version=seed)

        def load_update(self, names: list[str], seed: int) -> dict:
            """New values for the parameters ``names`` only, as a broadcast brings them; what vLLM got."""
            import dataclasses

            g = torch.Generator().manual_seed(seed)
            current = self.engine.policy.state_dict()
            self.engine.load_trainable({n: current[n] + 0.1 * torch.randn(current[n].shape, generator=g)
                                        for n in names}, version=seed)
            return dataclasses.asdict(self.engine.applied)

        def full_reload(self) -> int:
            """Every merged LLM tensor into vLLM (the reload load_trainable did before)."""
            from aurora_rl.model.checkpoint import merged_llm_state_dict

            merged = merged_llm_state_dict(self.engine.policy, copy=False)
            self.engine.llm.collective_rpc("load_hf_weights", args=(list(merged), list(merged.values())))
            self.engine.llm.reset_prefix_cache()
            return len(merged)

    return EngineActor.remote()


def assert_vllm_equals_hf(actor) -> dict[int, float]:
    import ray

    vllm, hf = ray.get([actor.vllm_first_token.remote(), actor.hf_first_token.remote()])
    for token, logprob in vllm.items():
        assert logprob == pytest.approx(hf[token], abs=1e-4)
    return vllm


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


def test_the_learner_takes_the_log_probabilities_vllm_records_after_temperature_and_top_p(ray_node, checkpoint,
                                                                                        tmp_path):
    """vLLM records each sampled token's log-probability after temperature and top-p; the learner's
    GRPO forward, by the same weights, gives the same numbers per token, and its raw softmax does
    not (the tiny LM's near-uniform softmax: a top-p of 0.9 leaves out about 12 of its 86 tokens)."""
    import ray

    actor = engine_actor(str(checkpoint), str(tmp_path / "work"))
    try:
        for temperature, top_p in ((1.0, 0.9), (0.7, 0.8)):
            group = ray.get(actor.sample_and_score.remote(temperature, top_p), timeout=300)
            tokens = sum(len(c["tokens"]) for c in group)
            assert tokens >= 20 and len({tuple(c["tokens"]) for c in group}) > 1  # sampled, not one answer
            for c in group:
                assert c["processed"] == pytest.approx(c["vllm"], abs=1e-3)
                # every token is off in the raw softmax by the log of the nucleus' mass (or more)
                assert all(abs(r - v) > 0.02 for r, v in zip(c["raw"], c["vllm"]))
    finally:
        ray.kill(actor)


def test_lora_updates_reach_vllm_as_their_changed_layers_only(ray_node, checkpoint, tmp_path):
    import ray

    names, merged = trained_and_merged(checkpoint)
    layers = 2
    qkv = [f"model.layers.{i}.self_attn.{m}_proj.{p}" for i in range(layers) for m in "qkv" for p in ("weight", "bias")]
    actor = engine_actor(str(checkpoint), str(tmp_path / "work"))
    try:
        seen = [ray.get(actor.vllm_first_token.remote(), timeout=300)]
        for version in (1, 2, 3):
            applied = ray.get(actor.load_update.remote(names, version))
            # LoRA on q and v: each layer's fused qkv (k unchanged, sent to complete it) and its bias;
            # lm_head and embed_tokens (trained in full); never o_proj, the MLP or a norm (frozen)
            assert applied["hf_names"] == ["model.embed_tokens.weight", *qkv, "lm_head.weight"]
            assert applied["vllm_params"] == sorted(["lm_head.weight", "model.embed_tokens.weight", *(
                f"model.layers.{i}.self_attn.qkv_proj.{p}" for i in range(layers) for p in ("weight", "bias"))])
            assert applied["nbytes"] == sum(merged[n].nbytes for n in applied["hf_names"]) < sum(
                t.nbytes for t in merged.values())
            vllm = assert_vllm_equals_hf(actor)
            assert vllm not in seen
            seen.append(vllm)

        # an update of the [SEG] side alone (projector, SAM's decoder) leaves vLLM and its prompts as they are
        seg_side = [n for n in names if n.startswith(("projector.", "segmenter."))]
        applied = ray.get(actor.load_update.remote(seg_side, 4))
        assert seg_side and applied["hf_names"] == [] and applied["vllm_params"] == []
        assert ray.get(actor.vllm_first_token.remote()) == seen[-1]

        # the layers never sent kept their weights: a full reload of every tensor samples the same
        assert ray.get(actor.full_reload.remote()) == len(merged)
        assert ray.get(actor.vllm_first_token.remote()) == seen[-1]
    finally:
        ray.kill(actor)


def test_fully_trained_llm_updates_reach_vllm_whole(ray_node, full_llm_checkpoint, tmp_path):
    import ray

    names, merged = trained_and_merged(full_llm_checkpoint)
    actor = engine_actor(str(full_llm_checkpoint), str(tmp_path / "work"))
    try:
        seen = [ray.get(actor.vllm_first_token.remote(), timeout=300)]
        for version in (1, 2):
            applied = ray.get(actor.load_update.remote(names, version))
            assert applied["hf_names"] == list(merged)  # every LLM tensor is trained
            assert applied["nbytes"] == sum(t.nbytes for t in merged.values())
            vllm = assert_vllm_equals_hf(actor)
            assert vllm not in seen
            seen.append(vllm)
        ray.get(actor.full_reload.remote())
        assert ray.get(actor.vllm_first_token.remote()) == seen[-1]
    finally:
        ray.kill(actor)
