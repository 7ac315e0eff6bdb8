"""Does the tiny policy learn to read the clip? A CPU check of the ``tiny`` backbone's encoders.

Trains the tiny policy in-process (no Ray, no DeepSpeed) with token cross-entropy on the
synthetic benchmark's scene chain-of-thought answers, then decodes greedily and scores what
can only be right if the model read the media: step 1 (colours, classes, positions from the
frames) and step 2 (which objects sound, from which frame, from the audio) exact-match, and
target-class accuracy, on train clips and held-out test_s clips.

    PYTHONPATH=. .venv/bin/python bench/research/tiny_learnability.py --root /tmp/synth300 --seconds 150

Each variant is a TinyBackboneConfig override plus optimiser settings; a table is printed.
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import torch

from aurora_rl.config.schema import LoraConfig, ModelConfig, TinyBackboneConfig
from aurora_rl.data.refavs_dataset import RefAVSDataset
from aurora_rl.model.build import MediaShape, build_tiny_policy
from aurora_rl.model.policy import PolicyInputs
from aurora_rl.model.tokenizer import build_word_tokenizer, words_of
from aurora_rl.prompts.answer_format import build_prompt, parse_answer
from aurora_rl.prompts.scene_cot import COT_WORDS, scene_cot

VARIANTS = {
    "baseline (raw fbank, unnormed media)": dict(tiny=dict(media_norm=False)),
    "media_norm": dict(tiny=dict(media_norm=True)),
    "media_norm, grid 3": dict(tiny=dict(media_norm=True, vision_grid=3)),
    "media_norm, h256 x 4 layers": dict(tiny=dict(media_norm=True, hidden_size=256, num_layers=4,
                                                  num_heads=8, num_kv_heads=4, intermediate_size=512)),
    "media_norm, 4 layers": dict(tiny=dict(media_norm=True, num_layers=4)),
    "media_norm, encoder width 128": dict(tiny=dict(media_norm=True, encoder_width=128)),
    "media_norm, encoder lr x3": dict(tiny=dict(media_norm=True), encoder_lr=6e-3),
    "media_norm, conv stem": dict(tiny=dict(media_norm=True, vision_stem="conv")),
    "media_norm, conv stem, width 128": dict(tiny=dict(media_norm=True, vision_stem="conv", encoder_width=128)),
}


def load_split(root: str, split: str, limit: int | None = None) -> list[dict]:
    """Preload rows once: frames [T,3,H,W], fbank [F,bins], expression and the scene-CoT answer."""
    ds = RefAVSDataset(root, split)
    rows = []
    for i in range(len(ds) if limit is None else min(limit, len(ds))):
        c = ds[i]
        rows.append(dict(frames=torch.from_numpy(c.frames), fbank=torch.from_numpy(c.fbank),
                         prompt=build_prompt(c.expression), answer=scene_cot(c.facts).answer))
    return rows


def batch_inputs(tok, rows: list[dict], with_answer: bool = True) -> PolicyInputs:
    prompts = [tok(r["prompt"], add_special_tokens=False).input_ids for r in rows]
    answers = [tok(r["answer"], add_special_tokens=False).input_ids + [tok.eos_token_id] if with_answer else []
               for r in rows]
    fb = torch.nn.utils.rnn.pad_sequence([r["fbank"] for r in rows], batch_first=True)
    lengths = torch.tensor([r["fbank"].shape[0] for r in rows])
    return PolicyInputs(prompts, answers, torch.stack([r["frames"] for r in rows]), fb, lengths)


@torch.no_grad()
def greedy(policy, tok, rows: list[dict], max_new: int = 90) -> list[str]:
    """Batched greedy decoding from left-padded prompt embeddings."""
    policy.eval()
    b = batch_inputs(tok, rows, with_answer=False)
    embeds = policy.prompt_embeds(b.prompt_ids, b.frames, b.fbank, b.fbank_lengths)
    n = max(e.shape[0] for e in embeds)
    x = torch.zeros(len(embeds), n, embeds[0].shape[1])
    att = torch.zeros(len(embeds), n, dtype=torch.long)
    for i, e in enumerate(embeds):
        x[i, n - e.shape[0]:], att[i, n - e.shape[0]:] = e, 1
    out = policy.base_lm.generate(inputs_embeds=x, attention_mask=att, max_new_tokens=max_new, do_sample=False,
                                  eos_token_id=policy.ids.eos, pad_token_id=policy.ids.pad)
    policy.train()
    return [tok.decode([t for t in row if t not in (policy.ids.eos, policy.ids.pad)]) for row in out.tolist()]


def step1_objects(text: str) -> dict[str, tuple[str, str]]:
    """'a red drum on the left , a blue bell in the center .' -> {'left': ('red', 'drum'), ...}."""
    objects = {}
    for part in text.rstrip(" .").split(" , "):
        words = part.split()
        if len(words) >= 4 and words[0] == "a":
            objects[words[-1]] = (words[1], words[2])
    return objects


def score(policy, tok, rows: list[dict]) -> dict[str, float]:
    hits = dict(step1=0, step2=0, step3=0, cls=0, color=0.0, obj_cls=0.0)
    for i in range(0, len(rows), 16):
        for r, text in zip(rows[i:i + 16], greedy(policy, tok, rows[i:i + 16])):
            got, want = parse_answer(text), parse_answer(r["answer"])
            hits["step1"] += got.steps.get("images") == want.steps["images"]
            hits["step2"] += got.steps.get("audio") == want.steps["audio"]
            hits["step3"] += got.steps.get("reference") == want.steps["reference"]
            seen, truth = step1_objects(got.steps.get("images", "")), step1_objects(want.steps["images"])
            hits["color"] += sum(seen.get(k, ("", ""))[0] == v[0] for k, v in truth.items()) / len(truth)
            hits["obj_cls"] += sum(seen.get(k, ("", ""))[1] == v[1] for k, v in truth.items()) / len(truth)
            hits["cls"] += got.target_class == want.target_class
    return {k: v / len(rows) for k, v in hits.items()}


def run_variant(name, spec, tok, train, evals, args) -> dict:
    tiny = dataclasses.replace(TinyBackboneConfig(), **spec.get("tiny", {}))
    cfg = ModelConfig(backbone="tiny", tiny=tiny, lora=LoraConfig(enabled=False))
    policy = build_tiny_policy(cfg, tok, MediaShape())
    lr, enc_lr = spec.get("lr", args.lr), spec.get("encoder_lr", args.lr)
    enc = [p for n, p in policy.named_parameters() if n.startswith(("vision.", "audio.")) and p.requires_grad]
    llm = [p for n, p in policy.named_parameters() if n.startswith("llm.") and p.requires_grad]
    opt = torch.optim.AdamW([dict(params=llm, lr=lr), dict(params=enc, lr=enc_lr)], weight_decay=0.0)
    warmup = args.warmup
    g = torch.Generator().manual_seed(0)
    start, step, ce = time.time(), 0, float("nan")
    policy.train()
    while time.time() - start < args.seconds and (args.steps <= 0 or step < args.steps):
        for group, base in zip(opt.param_groups, (lr, enc_lr)):
            group["lr"] = base * min(1.0, (step + 1) / warmup)
        idx = torch.randint(len(train), (args.batch,), generator=g).tolist()
        out = policy(batch_inputs(tok, [train[i] for i in idx]), with_masks=False)
        loss = -(out.answer_logprobs * out.answer_mask).sum() / out.answer_mask.sum()
        opt.zero_grad()
        loss.backward()
        if step == 0 or step % 100 == 0:
            gn = {part: sum(float(p.grad.norm() ** 2) for n, p in policy.named_parameters()
                            if n.startswith(part) and p.grad is not None) ** 0.5 for part in ("vision", "audio", "llm")}
            print(f"  [{name}] step {step} ce {loss.item():.3f} grad-norm " +
                  " ".join(f"{k} {v:.2e}" for k, v in gn.items()), flush=True)
        torch.nn.utils.clip_grad_norm_(policy.parameters(), 1.0)
        opt.step()
        step, ce = step + 1, loss.item()
    seconds = time.time() - start
    result = dict(variant=name, steps=step, seconds=seconds, ce=ce)
    for split, rows in evals.items():
        result.update({f"{split}_{k}": v for k, v in score(policy, tok, rows).items()})
    return result


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--root", default="/tmp/synth300")
    ap.add_argument("--seconds", type=float, default=150.0, help="training wall-clock per variant")
    ap.add_argument("--steps", type=int, default=0, help="optimiser steps per variant (0: only --seconds)")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--warmup", type=int, default=30)
    ap.add_argument("--eval-rows", type=int, default=48)
    ap.add_argument("--variants", nargs="*", default=list(VARIANTS), help="names from VARIANTS")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    train = load_split(args.root, "train")
    evals = {"train": train[: args.eval_rows], "test_s": load_split(args.root, "test_s", args.eval_rows)}
    tok = build_word_tokenizer(words_of([r["prompt"] + " " + r["answer"] for r in train + evals["test_s"]]
                                        + [" ".join(COT_WORDS)]))
    results = []
    for name in args.variants:
        results.append(run_variant(name, VARIANTS[name], tok, train, evals, args))
        print_table(results)


def print_table(results: list[dict]):
    cols = ["steps", "ce", "train_color", "train_obj_cls", "train_step2", "train_step3", "train_cls",
            "test_s_color", "test_s_obj_cls", "test_s_step2", "test_s_step3", "test_s_cls"]
    print(f"{'variant':40s} " + " ".join(f"{c:>12s}" for c in cols))
    for r in results:
        print(f"{r['variant']:40s} " + " ".join(f"{r[c]:12.3g}" for c in cols), flush=True)


if __name__ == "__main__":
    main()
