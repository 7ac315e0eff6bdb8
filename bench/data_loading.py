"""How fast the Ref-AVS reader delivers clips, against how fast the learner consumes them.

    PYTHONPATH=. .venv/bin/python bench/data_loading.py [--videos N] [--passes P] [--out table.md]

Generates a synthetic benchmark in a temporary folder, then, taking turns, measures clips/s of:
  - the reader called in a loop (one process, one torch thread: how learner ranks and rollout
    actors read their clips), and a torch DataLoader (2 workers, batch 8, collate_clips) as
    SFT reads them, for each audio feature kind;
  - the learner's consumption: one GRPO learner rank's training step on the tiny policy (forward
    with masks, GRPO + mask loss, backward, AdamW step) over its share of a step's completions
    (``--prompts`` x G, every ``--ranks``-th one, as the driver deals them), one thread, as a
    Ray actor with one CPU runs it. The rank used to read one clip per completion; it now reads
    each distinct clip once (a group's G completions share it): both needs are compared.
Best of ``--passes``; ratio > 1 means loading keeps ahead of learning.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from aurora_rl.data import RefAVSDataset, collate_clips
from aurora_rl.data.synthetic import generate_benchmark
from bench.side_by_side import Table


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
    """The tiny policy's GRPO training step on one rank's completions (clips given by index), AdamW."""

    def __init__(self, ds, indices: list[int]):
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
        clips = [ds[i % len(ds)] for i in indices]
        self.batch = collate_clips(clips)
        self.prompts = [tok(build_prompt(c.expression), add_special_tokens=False).input_ids for c in clips]
        answer = compose_answer("a red circle .", "a low beat .", "the first sound .", "guitar")
        self.answers = [tok(answer, add_special_tokens=False).input_ids] * len(clips)

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


def rate(run, items: int) -> float:
    start = time.perf_counter()
    run()
    return items / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=int, default=30)
    parser.add_argument("--passes", type=int, default=3)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--prompts", type=int, default=4, help="prompts per GRPO step")
    parser.add_argument("--group", type=int, default=3)
    parser.add_argument("--ranks", type=int, default=2, help="learner ranks the step's completions are dealt to")
    parser.add_argument("--out", type=Path, default=None, help="also write the markdown table here")
    args = parser.parse_args()
    torch.set_num_threads(1)  # as a Ray actor with one CPU, or a DataLoader worker
    indices = [j // args.group for j in range(args.prompts * args.group)][::args.ranks]  # rank 0's completions
    distinct = len(set(indices))
    table = Table("Data loading against the GRPO learner's consumption (clips/s)",
                  "one learner rank needs", "the reader delivers")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "synth"
        generate_benchmark(root, args.videos, seed=0)
        datasets = {f: RefAVSDataset(root, "train", image_size=args.image_size, mask_size=args.image_size,
                                     features=f) for f in ("kaldi_fbank", "whisper_log_mel")}
        learner = LearnerStep(datasets["kaldi_fbank"], indices)
        learner()  # warm-up
        runs = {"learner": lambda: rate(learner, 1)}  # steps/s
        for f, ds in datasets.items():
            runs[f"{f}/single"] = lambda ds=ds: rate(lambda: single_process(ds), len(ds))
            runs[f"{f}/loader"] = lambda ds=ds: rate(data_loader(ds, workers=2, batch=8), len(ds))
        best = {name: 0.0 for name in runs}
        for _ in range(args.passes):
            for name, run in runs.items():
                best[name] = max(best[name], run())
    steps = best["learner"]
    for f in datasets:
        table.add(f"{f}, reader in a loop vs a rank reading once per completion (before)", "clips/s",
                  steps * len(indices), best[f"{f}/single"])
        table.add(f"{f}, reader in a loop vs a rank reading each distinct clip once (now)", "clips/s",
                  steps * distinct, best[f"{f}/single"])
        table.add(f"{f}, DataLoader 2 workers, batch 8 (SFT) vs a rank's completions", "clips/s",
                  steps * len(indices), best[f"{f}/loader"])
    table.notes.append(f"learner rank: tiny policy, {len(indices)} completions of {distinct} distinct clips per step "
                       f"({args.prompts} prompts x G={args.group} dealt to {args.ranks} ranks), all 10 frames "
                       f"supervised, one torch thread, {steps:.2f} steps/s; clips of 10 frames at {args.image_size} "
                       f"px, masks at {args.image_size} px, 2 s of 16 kHz audio; best of {args.passes} turns")
    table.notes.append(f"share of a learner step spent reading its clips: {steps * len(indices) / best['kaldi_fbank/single']:.0%} "
                       f"before, {steps * distinct / best['kaldi_fbank/single']:.0%} now (kaldi_fbank)")
    table.emit(args.out)


if __name__ == "__main__":
    main()
