"""The policy on a GPU computes what it computes on the CPU: forward and gradients, per backbone.

For each backbone, a tiny random policy (the structure of the real one, tiny sizes) is built once
in float32 on the CPU and copied to the GPU. The same batch goes through both: answer log-probs,
mask logits, the [SEG] embedding and, after one backward of token + mask loss, the gradients of
every trainable parameter. float32 on the GPU must match the CPU to float32 rounding; bf16 on the
GPU is compared too, with the looser bound its 8-bit mantissa allows.

    PYTHONPATH=. python bench/gpu_parity.py [--device cuda] [--out parity.json]

Exits non-zero when a comparison is outside its bound. torch + transformers + peft only.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path

import torch

from aurora_rl.model.policy import PolicyInputs
from bench.gpu_model_check import build_random_policy, make_batch, sizes

# Largest relative difference allowed: ||a - b|| / ||a|| over each tensor. A gradient that is zero in
# exact arithmetic (the key bias of an attention layer: softmax ignores a constant shift) is rounding
# noise on both devices; such tensors are measured against the largest gradient norm instead.
BOUNDS = {torch.float32: 1e-3, torch.bfloat16: 0.15}  # bf16 on the CPU itself: up to 0.08
ZERO_GRAD = 1e-5  # a gradient whose norm is below this share of the largest gradient norm


def run(policy, batch: PolicyInputs) -> dict[str, torch.Tensor]:
    """Outputs and gradients of one token + mask loss, all as float32 on the CPU."""
    policy.zero_grad(set_to_none=True)
    out = policy(batch)
    loss = (-(out.answer_logprobs * out.answer_mask).sum() / out.answer_mask.sum()
            + torch.nn.functional.binary_cross_entropy_with_logits(
                out.mask_logits, torch.zeros_like(out.mask_logits)))
    loss.backward()
    result = {"answer_logprobs": out.answer_logprobs, "mask_logits": out.mask_logits, "loss": loss,
              "seg_embedding": out.seg_embedding}
    for name, p in policy.named_parameters():
        if p.grad is not None:
            result[f"grad/{name}"] = p.grad
    return {k: v.detach().float().cpu() for k, v in result.items()}


def relative_gap(ref: torch.Tensor, other: torch.Tensor, floor: float = 1e-12) -> float:
    return (ref - other).norm().item() / max(ref.norm().item(), floor)


def compare(name: str, device: str) -> list[dict]:
    s = sizes(tiny=True)
    torch.manual_seed(0)
    cpu_policy, kind = build_random_policy(name, s, "cpu", torch.float32)
    cpu_policy.eval()  # no dropout: the two runs must see the same function
    batch = make_batch(cpu_policy, s, kind, 2, "cpu")
    ref = run(cpu_policy, batch)
    rows = []
    for dtype in (torch.float32, torch.bfloat16):
        gpu_policy = copy.deepcopy(cpu_policy).to(device)
        for p in gpu_policy.parameters():
            p.data = p.data.to(dtype)
        got = run(gpu_policy, make_batch(cpu_policy, s, kind, 2, device))  # the same seeded batch, on the GPU
        missing = sorted(set(ref) ^ set(got))
        grad_scale = max(v.norm().item() for k, v in ref.items() if k.startswith("grad/"))
        floors = {k: ZERO_GRAD * grad_scale if k.startswith("grad/") else 1e-12 for k in ref}
        worst = max(((relative_gap(ref[k], got[k], floors[k]), k) for k in ref if k in got), default=(0.0, ""))
        outputs = {k: round(relative_gap(ref[k], got[k]), 6) for k in ("answer_logprobs", "mask_logits", "loss")}
        rows.append({"backbone": name, "dtype": str(dtype).removeprefix("torch."), "tensors": len(ref),
                     "outputs_rel_gap": outputs, "worst_rel_gap": round(worst[0], 6), "worst_tensor": worst[1],
                     "bound": BOUNDS[dtype], "missing": missing,
                     "ok": not missing and worst[0] <= BOUNDS[dtype]})
        del gpu_policy
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--backbones", nargs="+", default=["videollama2-av", "qwen2.5-omni"])
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    rows = [row for name in args.backbones for row in compare(name, args.device)]
    print("| backbone | dtype | tensors compared | log-probs | mask logits | worst (tensor) | bound | ok |")
    print("|---|---|---:|---:|---:|---|---:|---|")
    for r in rows:
        o = r["outputs_rel_gap"]
        print(f"| {r['backbone']} | {r['dtype']} | {r['tensors']} | {o['answer_logprobs']:.2e} | "
              f"{o['mask_logits']:.2e} | {r['worst_rel_gap']:.2e} ({r['worst_tensor']}) | {r['bound']:g} | "
              f"{'yes' if r['ok'] else 'NO'} |")
    if args.out:
        args.out.write_text(json.dumps(rows, indent=2))
    sys.exit(0 if all(r["ok"] for r in rows) else 1)


if __name__ == "__main__":
    main()
