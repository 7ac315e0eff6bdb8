"""Does the [SEG] prompt tell SAM which object to segment? A diagnosis of a trained checkpoint.

    PYTHONPATH=. .venv/bin/python bench/research/seg_prompt_probe.py --ckpt runs/demo/runs/tiny-sft/checkpoint \
        --data runs/demo/data [--fit-steps 1000 --sam runs/demo/runs/tiny-sam]

With teacher-forced scene-CoT answers on non-null rows, it reports:
  - spread: per-dimension std over samples of the [SEG] hidden state and of the projector output
    (the SAM prompt), against the prompt's norm. A prompt that is the same for every sample
    cannot select an object, and SAM then segments every object in the frame;
  - probe: a linear classifier, trained on train rows, predicting the target's column (left /
    center / right) from each, scored on test_s. It shows whether the information is there and
    where it is lost;
  - mask IoU and predicted / true area on test_s;
  - with ``--fit-steps N``: the LLM frozen, a fresh projector (its input standardised with
    statistics of the train rows, or not with ``--no-standardize``) and SAM's mask decoder
    reset to ``--sam`` are trained on the mask loss alone; the test_s IoU before and after.
"""

from __future__ import annotations

import argparse
import time

import torch

from aurora_rl.data.refavs_dataset import RefAVSDataset
from aurora_rl.model.checkpoint import load_policy
from aurora_rl.model.mask_loss import mask_loss
from aurora_rl.model.policy import PolicyInputs
from aurora_rl.prompts.answer_format import build_prompt
from aurora_rl.prompts.scene_cot import scene_cot

COLUMNS = {"left": 0, "center": 1, "right": 2}
FRAMES = [0, 5]  # two supervised frames per clip, as the demo trains


def clips(root: str, split: str, n: int) -> list:
    ds, out = RefAVSDataset(root, split), []
    for row in ds.rows:
        if len(out) == n:
            break
        clip = ds.load(row)
        if not clip.is_null:
            out.append(clip)
    return out


def batch_of(tok, rows: list) -> tuple[PolicyInputs, torch.Tensor, torch.Tensor]:
    """Inputs with the scene-CoT answer, the masks of FRAMES [B, 2, M, M], target columns [B]."""
    inputs = PolicyInputs(
        [tok(build_prompt(c.expression), add_special_tokens=False).input_ids for c in rows],
        [tok(scene_cot(c.facts).answer, add_special_tokens=False).input_ids for c in rows],
        torch.stack([torch.from_numpy(c.frames) for c in rows]),
        torch.nn.utils.rnn.pad_sequence([torch.from_numpy(c.fbank) for c in rows], batch_first=True),
        torch.tensor([c.fbank.shape[0] for c in rows]),
    )
    inputs.mask_frames = torch.tensor([FRAMES] * len(rows))
    masks = torch.stack([torch.from_numpy(c.masks[FRAMES]) for c in rows]).bool()
    columns = torch.tensor([COLUMNS[next(o for o in c.facts["objects"] if o["class"] == c.facts["target_class"])
                                    ["position"]] for c in rows])
    return inputs, masks, columns


@torch.no_grad()
def measure(policy, tok, rows: list, chunk: int = 16) -> dict[str, torch.Tensor]:
    policy.eval()
    parts: dict[str, list] = {"hidden": [], "prompt": [], "columns": [], "iou": [], "area": []}
    for lo in range(0, len(rows), chunk):
        inputs, masks, columns = batch_of(tok, rows[lo:lo + chunk])
        out = policy(inputs)
        pred = out.mask_logits > 0
        parts["hidden"].append(out.seg_hidden)
        parts["prompt"].append(out.seg_embedding)
        parts["columns"].append(columns)
        parts["iou"].append(((pred & masks).flatten(2).sum(-1) / (pred | masks).flatten(2).sum(-1).clamp(min=1))
                            .float().mean(1))
        parts["area"].append(pred.flatten(1).sum(1) / masks.flatten(1).sum(1).clamp(min=1))
    return {k: torch.cat(v) for k, v in parts.items()}


def probe_accuracy(train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor, test_y: torch.Tensor) -> float:
    """Standardised features, multinomial logistic regression (L2), accuracy on the test rows."""
    mu, sd = train_x.mean(0), train_x.std(0) + 1e-6
    train_x, test_x = (train_x - mu) / sd, (test_x - mu) / sd
    w = torch.zeros(train_x.shape[1], 3, requires_grad=True)
    b = torch.zeros(3, requires_grad=True)
    opt = torch.optim.Adam([w, b], lr=1e-2)
    for _ in range(500):
        loss = torch.nn.functional.cross_entropy(train_x @ w + b, train_y) + 1e-3 * w.pow(2).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return ((test_x @ w + b).argmax(1) == test_y).float().mean().item()


def refit_prompt_path(policy, tok, train: list, sam_path: str | None, steps: int, standardize: bool,
                      lr: float = 1e-3, batch: int = 8) -> None:
    """Train a fresh projector and SAM's mask decoder on the mask loss, the LLM frozen."""
    policy.requires_grad_(False)
    if sam_path:
        from aurora_rl.model.sam_checkpoint import load_sam

        decoder = load_sam(sam_path, policy.segmenter.input_size).mask_decoder
        policy.segmenter.sam.mask_decoder.load_state_dict(decoder.state_dict())
    for layer in (policy.projector.fc1, policy.projector.fc2):
        layer.reset_parameters()
    if standardize:
        hidden = measure(policy, tok, train[:160])["hidden"]
        mu, sd = hidden.mean(0), hidden.std(0) + 1e-6
        project = policy.projector.forward
        policy.projector.forward = lambda h: project((h - mu) / sd)
    params = [*policy.projector.parameters(), *policy.segmenter.sam.mask_decoder.parameters()]
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.AdamW(params, lr=lr)
    g = torch.Generator().manual_seed(0)
    start = time.monotonic()
    for step in range(1, steps + 1):
        policy.train()
        idx = torch.randint(len(train), (batch,), generator=g).tolist()
        inputs, masks, _ = batch_of(tok, [train[i] for i in idx])
        loss = mask_loss(policy(inputs).mask_logits, masks.float())[0]
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 100 == 0 or step == steps:
            rate = step / (time.monotonic() - start)
            print(f"  refit step {step}/{steps} mask loss {loss.item():.4f} | {rate:.1f} steps/s | "
                  f"ETA {(steps - step) / rate:.0f}s", flush=True)


def report(name: str, train: dict, test: dict) -> None:
    for key in ("hidden", "prompt"):
        spread = test[key].std(0).mean().item()
        norm = test[key].mean(0).norm().item()
        acc = probe_accuracy(train[key], train["columns"], test[key], test["columns"])
        print(f"| {name} | {key} | {spread:.4f} | {norm:.3f} | {acc:.3f} | {test['iou'].mean():.3f} | "
              f"{test['area'].mean():.2f} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ckpt", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--train-rows", type=int, default=320)
    ap.add_argument("--test-rows", type=int, default=96)
    ap.add_argument("--fit-steps", type=int, default=0)
    ap.add_argument("--sam", default=None, help="a tiny SAM folder whose mask decoder the refit starts from")
    ap.add_argument("--no-standardize", action="store_true")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    policy, tok = load_policy(args.ckpt)[:2]
    train, test = clips(args.data, "train", args.train_rows), clips(args.data, "test_s", args.test_rows)
    measured = measure(policy, tok, test)
    columns = measured["columns"]
    print(f"target column majority share on test_s: {columns.bincount().max().item() / len(columns):.3f}")
    print("| model | state | std over samples | norm of the mean | column probe acc | mask IoU | area / true |")
    print("|---|---|---:|---:|---:|---:|---:|")
    report("checkpoint", measure(policy, tok, train), measured)
    if args.fit_steps:
        refit_prompt_path(policy, tok, train, args.sam, args.fit_steps, not args.no_standardize)
        name = f"refit {args.fit_steps} steps" + ("" if args.no_standardize else ", standardised input")
        report(name, measure(policy, tok, train), measure(policy, tok, test))


if __name__ == "__main__":
    main()
