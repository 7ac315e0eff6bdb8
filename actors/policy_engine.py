"""One process's copy of the policy, for sampling and the [SEG] pass.

vLLM samples from ``prompt_embeds`` (the policy's own splice of frames, audio and text); the
policy's Hugging Face modules then run a prefill over prompt + completion to get the
last-layer state at the last ``[SEG]``, project it, and let SAM segment every frame. Rollout
actors (sampling, G per prompt) and evaluation actors (greedy) both use it. New weights
(the learner's trainable parameters) are applied to the HF modules and, merged, to vLLM: only
the merged tensors they change, a vLLM layer at a time (``aurora_rl/model/changed_weights.py``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from aurora_rl.config.schema import SamplingConfig
from aurora_rl.data.clip_sample import ClipSample
from aurora_rl.model.seg_pass import embed_clips, segment_answers
from aurora_rl.prompts.answer_format import build_prompt


@dataclass
class Completion:
    token_ids: list[int]
    logprobs: list[float]  # sampling log-probability of each token
    text: str
    has_seg: bool
    mask_probs: np.ndarray  # float16 [T, M, M] sigmoid of the mask logits (zeros without [SEG])


@dataclass
class AppliedWeights:
    """What the last ``load_trainable`` handed to vLLM."""

    hf_names: list[str] = field(default_factory=list)  # merged Hugging Face tensors
    nbytes: int = 0
    vllm_params: list[str] = field(default_factory=list)  # the vLLM parameters they were loaded into


@dataclass
class EngineTimings:
    sample_s: float = 0.0
    seg_s: float = 0.0
    tokens: int = 0
    extra: dict = field(default_factory=dict)


# vLLM imports this class by name inside its worker (a name the import contract cannot see)
WORKER_EXTENSION = "actors.vllm_worker_extension.WeightUpdateExtension"


class PromptTooLong(ValueError):
    """A clip's prompt and answer do not fit the engine's context."""


class PolicyEngine:
    """The checkpoint's policy (encoders, [SEG] pass, SAM) beside a vLLM engine serving its LLM.

    vLLM's ``max_model_len`` is the context one clip needs (``context_budget``: the media tokens
    of this backbone and preparation, a text budget, ``answer_tokens``); a backbone whose positions
    cannot hold it is refused here, by name, rather than every request later.
    """

    def __init__(self, checkpoint: str, work_dir: str, kv_cache_gib: float = 1.0, cpu_threads: Optional[str] = None,
                 seed: int = 0, answer_tokens: int = 320, device: str = "cpu"):
        from actors.vllm_engine import make_llm
        from aurora_rl.model.checkpoint import export_merged_llm, load_policy, merged_llm_sources
        from aurora_rl.model.policy import context_budget

        self.policy, self.tokenizer, self.model_cfg, self.shape = load_policy(checkpoint)
        self.device = device  # the process's device (aurora_rl/services/devices.py): encoders, [SEG] pass, SAM
        self.policy.to(device).eval().requires_grad_(False)
        self.budget = context_budget(self.policy, self.shape, answer_tokens)
        positions = self.policy.base_lm.config.max_position_embeddings
        if self.budget.total > positions:
            raise PromptTooLong(f"{checkpoint}: one clip needs {self.budget} tokens, but the LLM has "
                                f"{positions} positions (max_position_embeddings)")
        self.max_model_len = self.budget.total
        merged = export_merged_llm(self.policy, self.tokenizer, Path(work_dir) / "merged_llm", self.model_cfg.dtype)
        self.llm = make_llm(str(merged), dtype=self.model_cfg.dtype, seed=seed, max_model_len=self.max_model_len,
                            kv_cache_gib=kv_cache_gib, cpu_threads=cpu_threads,
                            worker_extension_cls=WORKER_EXTENSION)
        self.merged_sources = merged_llm_sources(self.policy)
        self.packed_modules = self.llm.collective_rpc("packed_modules")[0]
        self.version = 0
        self.timings = EngineTimings()
        self.applied = AppliedWeights()

    def memory(self) -> dict:
        """The device's memory, this process's share and the engine's context length."""
        from aurora_rl.services.devices import memory_report

        return {**memory_report(self.device), "max_model_len": self.max_model_len}

    def prompt_ids(self, expression: str) -> list[int]:
        return self.tokenizer(build_prompt(expression), add_special_tokens=False).input_ids

    @torch.no_grad()
    def complete(self, clips: list[ClipSample], sampling: SamplingConfig, greedy: bool = False,
                 seed: Optional[int] = None) -> list[list[Completion]]:
        """G = ``sampling.group_size`` completions per clip (1 when greedy), with masks."""
        from actors.vllm_engine import sampling_params

        batch, embeds = embed_clips(self.policy, [self.prompt_ids(c.expression) for c in clips], clips, self.device)
        for clip, e in zip(clips, embeds):
            if e.shape[0] + sampling.max_new_tokens > self.max_model_len:
                raise PromptTooLong(f"{clip.uid}@{clip.row}: a {e.shape[0]}-token prompt + {sampling.max_new_tokens} "
                                    f"new tokens do not fit the engine's {self.max_model_len} ({self.budget})")
        params = sampling_params(sampling, greedy=greedy, seed=seed)
        params.stop_token_ids = [self.policy.ids.eos]
        started = time.monotonic()
        outputs = self.llm.generate([{"prompt_embeds": e} for e in embeds], params, use_tqdm=False)
        self.timings.sample_s += time.monotonic() - started
        started = time.monotonic()
        results = self._segment(clips, batch, embeds, [out.outputs for out in outputs])
        self.timings.seg_s += time.monotonic() - started
        self.timings.tokens += sum(len(c.token_ids) for group in results for c in group)
        return results

    def _segment(self, clips: list[ClipSample], batch: dict, embeds: list[torch.Tensor], samples: list
                 ) -> list[list[Completion]]:
        """The completions of every clip with their masks (``segment_answers``: one batched [SEG]
        prefill, one SAM decode per clip), at the size the ground truth is read at."""
        eos = self.policy.ids.eos
        owner, token_lists, logprobs = [], [], []
        for i, group in enumerate(samples):
            for s in group:
                owner.append(i)
                token_lists.append([t for t in s.token_ids if t != eos])
                logprobs.append([s.logprobs[k][t].logprob for k, t in enumerate(s.token_ids) if t != eos])
        has, probs = segment_answers(self.policy, clips, batch, embeds, owner, token_lists, clips[0].masks.shape[-1])
        texts = self.tokenizer.batch_decode(token_lists, skip_special_tokens=False)
        completions = [Completion(token_lists[k], logprobs[k], texts[k], has[k], probs[k]) for k in range(len(owner))]
        return [[c for c, o in zip(completions, owner) if o == i] for i in range(len(clips))]

    def load_trainable(self, state: dict[str, torch.Tensor], version: int) -> None:
        """Apply the learner's trainable parameters (policy names) to the HF modules and to vLLM.

        vLLM is given only the merged tensors ``state`` changes, each vLLM layer whole; its other
        layers keep their weights. A state that changes no LLM tensor leaves vLLM as it is.
        """
        from aurora_rl.model.changed_weights import changed_merged_names
        from aurora_rl.model.checkpoint import merged_llm_state_dict

        missing = set(state) - set(self.policy.state_dict())
        if missing:
            raise KeyError(f"weights for unknown parameters: {sorted(missing)[:5]}")
        self.policy.load_state_dict(state, strict=False)  # SAM's cached image embeddings stay valid: frozen encoder
        names = changed_merged_names(state, self.merged_sources, self.packed_modules)
        # Uncopied: vLLM repacks most of them; the rest may then share storage with the HF modules,
        # which hold the same values and change only here.
        merged = merged_llm_state_dict(self.policy, copy=False, names=set(names))
        loaded = []
        if merged:
            loaded = self.llm.collective_rpc("reload_hf_layers", args=(list(merged), list(merged.values())))[0]
        self.applied = AppliedWeights(list(merged), sum(t.numel() * t.element_size() for t in merged.values()), loaded)
        self.llm.reset_prefix_cache()
        self.version = version
