"""Rollout sampling: the rollout actor's vLLM engine against HF ``generate``, side by side.

    PYTHONPATH=. .venv/bin/python bench/rollout_sampling.py [--sizes tiny 0.5b] [--prompts 4]
        [--group 3] [--new-tokens 32] [--reps 3] [--out table.md]

For each policy size, the same random-init policy (tiny backbone, bf16) is saved once; its
prompt embeddings for ``--prompts`` synthetic clips are computed once and handed to every
contender, each in its own process:
  - baseline (the AURORA code): HF ``generate`` one prompt at a time with
    ``num_return_sequences=G`` (``aurora_rl.model.generation.hf_generate``), all cores;
  - HF ``generate`` over all prompts in one batch (a stronger baseline, for reference);
  - ours: ``PolicyEngine``'s vLLM (prompt_embeds, ``n=G``) under each thread binding that
    ``rollout.cpu_threads`` can set: "nobind" (our default: the OS places the threads), bound to
    every core, and vLLM's own "auto" (on x86 it keeps the last core for its scheduler and pins
    compute to the others: on 2 cores, core 0, for every engine of the machine).
Every completion is exactly ``--new-tokens`` long (eos suppressed on both sides), T=1.0,
top-p 0.9. Repetitions are interleaved; the best of each is reported.
Sizes: ``bench/policy_sizes.py``.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

from bench.policy_sizes import SIZES, write_checkpoint
from bench.side_by_side import Table, interleaved
from bench.worker_process import WorkerProcess

ALL_CORES = f"0-{(os.cpu_count() or 1) - 1}"
BINDINGS = {"vllm-auto": "vLLM's own auto binding (compute pinned to the first cores)",
            "vllm-all-cores": f"vLLM bound to cores {ALL_CORES}",
            "vllm-nobind": "vLLM unbound (nobind, our default: the OS places its threads)"}


def prompt_embeds(checkpoint: Path, data_root: Path, prompts: int) -> list:
    from aurora_rl.data.clip_sample import collate_clips
    from aurora_rl.data.refavs_dataset import RefAVSDataset
    from aurora_rl.model.checkpoint import load_policy
    from aurora_rl.prompts.answer_format import build_prompt

    policy, tok, _, shape = load_policy(checkpoint)
    ds = RefAVSDataset(data_root, "train", image_size=shape.image_size, mask_size=shape.mask_size)
    clips = [ds[i % len(ds)] for i in range(prompts)]
    batch = collate_clips(clips)
    ids = [tok(build_prompt(c.expression), add_special_tokens=False).input_ids for c in clips]
    dtype = next(policy.parameters()).dtype  # the tiny encoders take inputs in the model's dtype
    return policy.eval().prompt_embeds(ids, batch["frames"].to(dtype), batch["fbank"].to(dtype), batch["fbank_lengths"])


class HFSampler:
    """The policy's own LLM in this process, using every core."""

    def __init__(self, checkpoint: str):
        import torch

        from aurora_rl.model.checkpoint import load_policy

        torch.set_num_threads(os.cpu_count() or 1)
        self.policy = load_policy(checkpoint)[0].eval()

    def per_prompt(self, embeds: list, group: int, new_tokens: int, seed: int) -> int:
        """As the AURORA code samples: one ``generate`` per prompt, G return sequences."""
        from aurora_rl.model.generation import hf_generate

        tokens = 0
        for i, e in enumerate(embeds):
            out = hf_generate(self.policy, e, new_tokens, greedy=False, temperature=1.0, top_p=0.9,
                              num_return_sequences=group, seed=seed + i, min_new_tokens=new_tokens)
            tokens += len(out) * new_tokens  # pad ids a random LM may sample are dropped by hf_generate
        return tokens

    def batched(self, embeds: list, group: int, new_tokens: int, seed: int) -> int:
        """All prompts in one ``generate`` (left-padded embeddings), G return sequences each."""
        import torch

        torch.manual_seed(seed)
        lm = self.policy.base_lm
        width = max(e.shape[0] for e in embeds)
        dtype = next(lm.parameters()).dtype
        padded = torch.zeros(len(embeds), width, embeds[0].shape[1], dtype=dtype)
        attention = torch.zeros(len(embeds), width, dtype=torch.long)
        for i, e in enumerate(embeds):
            padded[i, width - e.shape[0]:] = e.to(dtype)
            attention[i, width - e.shape[0]:] = 1
        with torch.no_grad():
            out = lm.generate(inputs_embeds=padded, attention_mask=attention, max_new_tokens=new_tokens,
                              min_new_tokens=new_tokens, do_sample=True, temperature=1.0, top_p=0.9,
                              num_return_sequences=group, eos_token_id=self.policy.ids.eos,
                              pad_token_id=self.policy.ids.pad)
        return out.shape[0] * new_tokens


class VLLMSampler:
    """The rollout actor's engine (``PolicyEngine``): vLLM from prompt_embeds."""

    def __init__(self, checkpoint: str, work_dir: str, cpu_threads: str | None):
        from actors.policy_engine import PolicyEngine

        self.engine = PolicyEngine(checkpoint, work_dir, kv_cache_gib=1.0, cpu_threads=cpu_threads)

    def sample(self, embeds: list, group: int, new_tokens: int, seed: int) -> int:
        from actors.vllm_engine import sampling_params
        from aurora_rl.config.schema import SamplingConfig

        params = sampling_params(SamplingConfig(group_size=group, max_new_tokens=new_tokens), seed=seed)
        params.ignore_eos = True
        outputs = self.engine.llm.generate([{"prompt_embeds": e} for e in embeds], params, use_tqdm=False)
        return sum(len(c.token_ids) for o in outputs for c in o.outputs)


def measure_size(size: str, args, data_root: Path, tmp: Path, table: Table) -> None:
    checkpoint, params = write_checkpoint(size, tmp / f"ckpt-{size}")
    embeds = prompt_embeds(checkpoint, data_root, args.prompts)
    g, n = args.group, args.new_tokens
    completions = len(embeds) * g
    contenders = {"hf": WorkerProcess(HFSampler, str(checkpoint))}
    try:
        for name, threads in (("vllm-auto", "auto"), ("vllm-all-cores", ALL_CORES), ("vllm-nobind", "nobind")):
            if name in args.skip:
                continue
            contenders[name] = WorkerProcess(VLLMSampler, str(checkpoint), str(tmp / f"work-{size}-{name}"), threads)
        tokens = {}

        def run(name: str, method: str):
            def go():
                tokens[name] = contenders[name.split("/")[0]].call(method, embeds, g, n, args.seed)
            return go

        runs = {"hf/per_prompt": run("hf/per_prompt", "per_prompt"), "hf/batched": run("hf/batched", "batched")}
        runs.update({name: run(name, "sample") for name in contenders if name.startswith("vllm")})
        times = interleaved(runs, args.reps)
    finally:
        for c in contenders.values():
            c.close()
    rate = {name: tokens[name] / min(t) for name, t in times.items()}
    for name in runs:  # every contender produced the same number of tokens
        assert tokens[name] == completions * n, (name, tokens[name])
    label = f"{size} ({params:,.1f}M LLM params)"
    shape = f"{len(embeds)} prompts x G={g} x {n} tokens"
    base = rate["hf/per_prompt"]
    for name in (k for k in rate if k.startswith("vllm")):
        binding = BINDINGS[name]
        table.add(f"{label}, {binding}, {shape}", "tokens/s", base, rate[name])
        table.add(f"{label}, {binding}", "completions/s", base / n, rate[name] / n)
    best = max(v for k, v in rate.items() if k.startswith("vllm"))
    table.add(f"{label}, best vLLM vs HF batched over all prompts", "tokens/s", rate["hf/batched"], best)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", default=["tiny", "0.5b"], choices=sorted(SIZES))
    parser.add_argument("--prompts", type=int, default=4)
    parser.add_argument("--group", type=int, default=3)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip", nargs="*", default=[], choices=sorted(BINDINGS))
    parser.add_argument("--out", type=Path, default=None, help="also write the markdown table here")
    args = parser.parse_args()
    from aurora_rl.data.synthetic import generate_benchmark

    table = Table("Rollout sampling (bf16, T=1.0, top-p 0.9, fixed lengths)",
                  "HF generate, per prompt, num_return_sequences=G", "rollout actor's vLLM (prompt_embeds, n=G)")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        generate_benchmark(tmp / "synth", videos=4, seed=0)
        for size in args.sizes:
            measure_size(size, args, tmp / "synth", tmp, table)
    table.notes.append(f"best of {args.reps} interleaved repetitions after one warm-up; every contender in its own "
                       "process; HF uses every core; VLLM_CPU_KVCACHE_SPACE=1, in-process engine core")
    table.emit(args.out)


if __name__ == "__main__":
    main()
