"""How fast the Ref-AVS reader delivers clips, against how fast the learner consumes them.

    PYTHONPATH=. .venv/bin/python bench/data_loading.py [--videos N] [--passes P] [--out table.md]

Generates a synthetic benchmark in a temporary folder, then, taking turns, measures clips/s of:
  - the reader called in a loop (one process, one torch thread: how learner ranks and rollout
    actors read their clips), and a torch DataLoader (2 workers, batch 8, collate_clips) as
    SFT reads them, for each audio feature kind;
  - the learner's consumption: one GRPO learner rank's training step on the tiny policy (forward
    with masks, GRPO + mask loss, backward, AdamW step) over ``--batch`` completions, one thread,
    as a Ray actor with one CPU runs it. A GRPO step's completions come G per clip, so the rank
    needs ``batch / G`` distinct clips per step: the table compares reading against that.
Best of ``--passes``; ratio > 1 means loading keeps ahead of learning.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

from aurora_rl.data import RefAVSDataset, collate_clips
from aurora_rl.data.synthetic import generate_benchmark

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.side_by_side import Table  # noqa: E402


def clips_per_second(run, clips: int) -> float:
    start = time.perf_counter()
    run()
    return clips / (time.perf_counter() - start)


def single_process(ds) -> None:
    for i in range(len(ds)):
        ds[i]


def data_loader(ds, workers: int, batch: int):
    def run() -> None:
        loader = torch.utils.data.DataLoader(ds, batch_size=batch, num_workers=workers, collate_fn=collate_clips)
        for _ in loader:
            pass

    return run


class LearnerStep:
    """The tiny policy's GRPO training step on ``batch`` completions (G per clip), AdamW."""

    def __init__(self, ds, batch: int, group: int):
        from aurora_rl.config.schema import ModelConfig
        from aurora_rl.data.synthetic import synthetic_words
        from aurora_rl.model.build import MediaShape, build_tiny_policy
        from aurora_rl.model.tokenizer import build_word_tokenizer
        from aurora_rl.prompts.answer_format import build_prompt, compose_answer

        cfg = ModelConfig()
        cfg.lora.enabled = False
        cfg.sam.input_size = 64
        tok = build_word_tokenizer(synthetic_words())
        self.policy = build_tiny_policy(cfg, tok, MediaShape(), seed=0).train()
        self.optimizer = torch.optim.AdamW([p for p in self.policy.parameters() if p.requires_grad], lr=1e-5)
        clips = [ds[i // group % len(ds)] for i in range(batch)]
        self.batch = collate_clips(clips)
        self.prompts = [tok(build_prompt(c.expression), add_special_tokens=False).input_ids for c in clips]
        answer = compose_answer("a red circle .", "a low beat .", "the first sound .", "guitar")
        self.answers = [tok(answer, add_special_tokens=False).input_ids] * batch
        self.clips = batch

    def __call__(self) -> None:
        from aurora_rl.model.mask_loss import mask_loss
        from aurora_rl.model.policy import PolicyInputs

        b = self.batch
        out = self.policy(PolicyInputs(self.prompts, self.answers, b["frames"], b["fbank"], b["fbank_lengths"],
                                       b["vid"]))
        ratio = (out.answer_logprobs - out.answer_logprobs.detach()).exp()
        loss = -(ratio * out.answer_mask).sum() / out.answer_mask.sum()
        loss = loss + mask_loss(out.mask_logits, b["masks"], b["mask_valid"])[0]
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=int, default=30)
    parser.add_argument("--passes", type=int, default=3)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--batch", type=int, default=6, help="completions per learner rank per step (P x G / K)")
    parser.add_argument("--group", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None, help="also write the markdown table here")
    args = parser.parse_args()
    torch.set_num_threads(1)  # as a Ray actor with one CPU, or a DataLoader worker
    table = Table("Data loading against the GRPO learner's consumption (clips/s)",
                  "one learner rank consumes", "the reader delivers")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "synth"
        generate_benchmark(root, args.videos, seed=0)
        datasets = {f: RefAVSDataset(root, "train", image_size=args.image_size, mask_size=args.image_size,
                                     features=f) for f in ("kaldi_fbank", "whisper_log_mel")}
        learner = LearnerStep(datasets["kaldi_fbank"], args.batch, args.group)
        learner()  # warm-up
        runs = {"learner": lambda: clips_per_second(learner, args.batch // args.group)}
        for f, ds in datasets.items():
            runs[f"{f}/single"] = lambda ds=ds: clips_per_second(lambda: single_process(ds), len(ds))
            runs[f"{f}/loader"] = lambda ds=ds: clips_per_second(data_loader(ds, workers=2, batch=8), len(ds))
        best = {name: 0.0 for name in runs}
        for _ in range(args.passes):
            for name, run in runs.items():
                best[name] = max(best[name], run())
    for f in datasets:
        table.add(f"{f}, reader in a loop (learner rank, rollout actor)", "clips/s", best["learner"],
                  best[f"{f}/single"])
        table.add(f"{f}, DataLoader 2 workers, batch 8 (SFT)", "clips/s", best["learner"], best[f"{f}/loader"])
    table.notes.append(f"learner: tiny policy, {args.batch} completions of {args.batch // args.group} clips per step "
                       f"(G={args.group}), all 10 frames supervised, one torch thread; clips of 10 frames at "
                       f"{args.image_size} px, masks at {args.image_size} px, 2 s of 16 kHz audio; best of "
                       f"{args.passes} turns")
    table.emit(args.out)


if __name__ == "__main__":
    main()
