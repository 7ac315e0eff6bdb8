"""``aurora-rl infer``: reason about one clip, write its masks and an overlay picture."""

from __future__ import annotations

import argparse


def register(sub) -> None:
    p = sub.add_parser("infer", help="run a checkpoint on one clip: reasoning, masks (PNG), overlay")
    p.add_argument("--ckpt", required=True, help="an aurora_rl checkpoint folder")
    p.add_argument("--frames", required=True, help="folder of frames 0.jpg .. 9.jpg (any image files, sorted)")
    p.add_argument("--audio", required=True, help="the clip's WAV file")
    p.add_argument("--text", required=True, type=expression, help="the referring expression")
    p.add_argument("--out", default="infer_out", help="output folder (masks/, overlay.png, answer.txt)")
    p.add_argument("--max-new-tokens", type=int, default=150)
    p.add_argument("--sample", action="store_true", help="sample instead of greedy decoding")
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--top-p", type=float, default=0.9)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(handler=run_infer)


def expression(text: str) -> str:
    """An argparse type: a referring expression, not blank and no longer than a metadata.csv one may be."""
    from aurora_rl.data.refavs_layout import MAX_EXPRESSION_CHARS

    if not text.strip():
        raise argparse.ArgumentTypeError("the referring expression is empty")
    if len(text) > MAX_EXPRESSION_CHARS:
        raise argparse.ArgumentTypeError(f"the referring expression has {len(text)} characters "
                                         f"(at most {MAX_EXPRESSION_CHARS})")
    return text


def run_infer(args) -> int:
    from aurora_rl.inference import infer_clip

    result = infer_clip(args.ckpt, args.frames, args.audio, args.text, args.out, max_new_tokens=args.max_new_tokens,
                        greedy=not args.sample, temperature=args.temperature, top_p=args.top_p, seed=args.seed)
    print(result.answer)
    print(f"masks: {result.mask_dir}  overlay: {result.overlay}")
    return 0
