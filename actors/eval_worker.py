"""A Ray actor that runs a checkpoint over its shard of a split: vLLM greedy (evaluation) or
sampled (stage-2 failure mining, CoT generation) completions + the [SEG] pass per clip."""

from __future__ import annotations

from typing import Optional

import ray

from aurora_rl.config.schema import DataConfig, SamplingConfig
from aurora_rl.evaluation.clip_loading import OnBadClip, load_clips
from aurora_rl.services.library_logs import capture_output


@ray.remote(num_cpus=1)
class EvalWorker:
    def __init__(self, checkpoint: str, data: DataConfig, work_dir: str, kv_cache_gib: float = 1.0,
                 max_new_tokens: int = 150, batch_size: int = 8, log_file: Optional[str] = None, gpus: float = 0.0,
                 role: str = "evaluation actor"):
        capture_output(log_file)  # vLLM's and torch's output: to the run folder, not the console
        from actors.policy_engine import PolicyEngine
        from aurora_rl.services.devices import role_device

        self.data = data
        device = role_device(role, gpus)  # before anything loads: a missing GPU is named, not worked around
        self.engine = PolicyEngine(checkpoint, work_dir, kv_cache_gib=kv_cache_gib, answer_tokens=max_new_tokens,
                                   device=device)
        self.max_new_tokens = max_new_tokens
        self.batch_size = batch_size

    def memory(self) -> dict:
        """The device's memory and this actor's share (``aurora-rl preflight``)."""
        return self.engine.memory()

    def run(self, split: str, indices: list[int], sampling: Optional[SamplingConfig] = None,
            seed: int = 0, on_bad_clip: OnBadClip = "fail") -> list[dict]:
        """Predictions for rows ``indices`` of ``split``: text, [SEG] flag, mask probabilities, GT.

        ``sampling`` None: one greedy completion per row; else ``sampling.group_size`` sampled
        completions per row (each its own prediction, "sample" = k). ``on_bad_clip`` "skip": a
        row whose files cannot be read gives a skip record instead (evaluation/clip_loading.py).
        """
        from aurora_rl.data import build_dataset

        dataset = build_dataset(self.data, split, **self.engine.shape.reader_options())
        greedy = sampling is None
        params = SamplingConfig(group_size=1, max_new_tokens=self.max_new_tokens) if greedy else sampling
        out = []
        for start in range(0, len(indices), self.batch_size):
            kept, clips, skipped = load_clips(dataset, indices[start:start + self.batch_size], split, on_bad_clip)
            out += skipped
            if not clips:
                continue
            groups = self.engine.complete(clips, params, greedy=greedy, seed=seed + start)
            for index, clip, completions in zip(kept, clips, groups):
                for k, completion in enumerate(completions):
                    out.append({
                        "index": index, "sample": k, "uid": clip.uid, "row": clip.row, "split": split,
                        "expression": clip.expression,
                        "text": completion.text, "has_seg": completion.has_seg,
                        "mask_probs": completion.mask_probs, "gt_masks": clip.masks, "mask_valid": clip.mask_valid,
                        "is_null": clip.is_null,
                        "gt_class": None if clip.facts is None else clip.facts.get("target_class"),
                        "kind": None if clip.facts is None else clip.facts.get("expression_kind"),
                    })
        return out
