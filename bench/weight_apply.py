"""Applying a broadcast policy version in a rollout engine: every LLM tensor reloaded into vLLM
against only the layers the update changes.

    PYTHONPATH=. .venv/bin/python bench/weight_apply.py [--sizes tiny 0.5b] [--trainings lora full] [--reps 5]
        [--out table.md]

One process per policy (a ``PolicyEngine`` with its vLLM engine, as a rollout actor holds it) is
given a new version of the policy's trainable parameters (what the learner broadcasts) again and
again, the two ways taking turns on the same engine:
  - baseline: what ``load_trainable`` did before: the HF modules, then the whole merged LLM
    through vLLM's ``reload_weights`` (``load_hf_weights``);
  - ours: ``load_trainable``: the HF modules, then the merged tensors the update changes, a
    vLLM layer at a time (``reload_hf_layers``).
A second pair of rows times the vLLM call alone (the merged tensors made beforehand), since at
the tiny size updating the HF modules (encoders, SAM decoder included) is most of an apply.
Policies: ``tiny`` (float32) and ``0.5b`` (the Qwen2-0.5B-shaped decoder, bf16) of
``bench/policy_sizes.py``, each with LoRA on q/v and lm_head + embed_tokens trained in full (the
LoRA config's defaults) and with the LLM trained in full (the tiny configs). Seconds are timed
inside the engine's process, from the new state in hand to vLLM holding it.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from bench.policy_sizes import write_checkpoint
from bench.side_by_side import Table
from bench.worker_process import WorkerProcess


class Applier:
    """A rollout engine and two new versions of its trainable parameters, applied in turns."""

    def __init__(self, checkpoint: str, work_dir: str):
        import torch

        from actors.policy_engine import PolicyEngine
        from aurora_rl.model.checkpoint import load_policy, trainable_state

        names = list(trainable_state(load_policy(checkpoint)[0]))
        self.engine = PolicyEngine(checkpoint, work_dir, kv_cache_gib=1.0)
        current = self.engine.policy.state_dict()
        g = torch.Generator().manual_seed(0)
        self.states = [{n: current[n] + (0.01 * torch.randn(current[n].shape, generator=g)).to(current[n].dtype)
                        for n in names} for _ in range(2)]
        self.version = 0

    def apply(self, full: bool) -> tuple[float, int, int]:
        """One new version; returns (seconds, bytes handed to vLLM, tensors handed to vLLM)."""
        self.version += 1
        state = self.states[self.version % 2]
        start = time.perf_counter()
        if full:
            nbytes, tensors = self._full_reload(state)
        else:
            self.engine.load_trainable(state, self.version)
            nbytes, tensors = self.engine.applied.nbytes, len(self.engine.applied.hf_names)
        return time.perf_counter() - start, nbytes, tensors

    def reload_only(self, full: bool) -> float:
        """Seconds of the vLLM call alone, for the current version's merged tensors (all or the changed)."""
        from aurora_rl.model.changed_weights import changed_merged_names
        from aurora_rl.model.checkpoint import merged_llm_state_dict

        engine = self.engine
        names = None if full else set(changed_merged_names(self.states[0], engine.merged_sources,
                                                            engine.packed_modules))
        merged = merged_llm_state_dict(engine.policy, copy=False, names=names)
        args = (list(merged), list(merged.values()))
        start = time.perf_counter()
        if full:
            engine.llm.collective_rpc("load_hf_weights", args=args)
        else:
            engine.llm.collective_rpc("reload_hf_layers", args=args)
        return time.perf_counter() - start

    def _full_reload(self, state) -> tuple[int, int]:
        """``load_trainable`` as it was: every merged LLM tensor through ``reload_weights``."""
        from aurora_rl.model.checkpoint import merged_llm_state_dict

        engine = self.engine
        missing = set(state) - set(engine.policy.state_dict())
        if missing:
            raise KeyError(f"weights for unknown parameters: {sorted(missing)[:5]}")
        engine.policy.load_state_dict(state, strict=False)
        merged = merged_llm_state_dict(engine.policy, copy=False)
        engine.llm.collective_rpc("load_hf_weights", args=(list(merged), list(merged.values())))
        engine.llm.reset_prefix_cache()
        engine.version = self.version
        return sum(t.numel() * t.element_size() for t in merged.values()), len(merged)


def measure(size: str, lora: bool, args, tmp: Path, table: Table) -> None:
    dtype = "float32" if size == "tiny" else "bfloat16"
    kind = "LoRA q/v + lm_head, embed_tokens" if lora else "LLM trained in full"
    checkpoint, params = write_checkpoint(size, tmp / f"ckpt-{size}-{lora}", dtype=dtype, lora=lora)
    seconds, reload_s, sent = {True: [], False: []}, {True: [], False: []}, {}
    with WorkerProcess(Applier, str(checkpoint), str(tmp / f"work-{size}-{lora}")) as applier:
        for rep in range(args.reps + 1):  # the first round warms up
            for full in (True, False):
                s, nbytes, tensors = applier.call("apply", full)
                seconds[full] += [s] if rep else []
                sent[full] = (nbytes, tensors)
                s = applier.call("reload_only", full)
                reload_s[full] += [s] if rep else []
    label = f"{size} ({params:,.1f}M LLM parameters, {dtype}), {kind}"
    table.add(f"{label}: apply one version (load_trainable)", "ms", min(seconds[True]) * 1e3,
              min(seconds[False]) * 1e3)
    table.add(f"{label}: the vLLM reload alone", "ms", min(reload_s[True]) * 1e3, min(reload_s[False]) * 1e3)
    table.add(f"{label}: handed to vLLM ({sent[True][1]} vs {sent[False][1]} tensors)", "MiB",
              sent[True][0] / 2**20, sent[False][0] / 2**20)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", default=["tiny", "0.5b"], choices=["tiny", "0.5b"])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--trainings", nargs="+", default=["lora", "full"], choices=["lora", "full"],
                        help="the policies' training: LoRA on the LLM, or the LLM in full")
    parser.add_argument("--out", type=Path, default=None, help="also write the markdown table here")
    args = parser.parse_args()
    table = Table("Applying a policy version in a rollout engine (HF modules + vLLM, this CPU)",
                  "every LLM tensor, vLLM reload_weights", "changed layers only, load_trainable")
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes:
            for training in args.trainings:
                measure(size, training == "lora", args, Path(tmp), table)
    table.notes.append(f"best of {args.reps} repetitions after one warm-up round, the two ways taking turns on one "
                       "engine; each apply brings new values for every trainable parameter (LLM, encoders, "
                       "projector, SAM decoder); the HF modules' update is in both")
    table.notes.append("Lower is better here (time, bytes): ours / baseline < 1 means less")
    table.emit(args.out)


if __name__ == "__main__":
    main()
