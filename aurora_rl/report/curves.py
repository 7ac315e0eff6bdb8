"""Training curves of one stage: a panel per quantity, drawn from its metrics.jsonl series."""

from __future__ import annotations

import fnmatch
from pathlib import Path
from typing import Optional

import numpy as np

# (title, y label, key patterns). Panels whose keys a stage did not log are left out, so the
# same list serves SFT (ce/bce/dice/distill/total) and GRPO (rewards, KL, clipping, ...).
PANELS = [
    ("reward by kind", "mean reward", ["reward", "reward_*"]),
    ("group reward std (learning signal)", "std within a group", ["group_reward_std"]),
    ("KL to the reference policy", "KL", ["kl"]),
    ("clip fraction", "share of tokens clipped", ["clip_fraction"]),
    ("policy loss", "loss", ["loss", "policy_loss"]),
    ("total loss", "loss", ["total"]),
    ("answer cross-entropy", "CE (nats/token)", ["ce"]),
    ("mask losses", "loss", ["bce", "dice", "mask_bce", "mask_dice"]),
    ("[SEG] distillation", "MSE", ["distill"]),
    ("time per step by phase", "seconds", ["time_*_s"]),
    ("gradient norm", "L2 norm", ["grad_norm"]),
    ("learning rate", "lr", ["lr"]),
]
SMOOTH_FROM = 20  # fewer points than this are drawn raw: smoothing would hide them


def panel_keys(patterns: list[str], keys: list[str]) -> list[str]:
    out = []
    for pattern in patterns:
        out += [k for k in sorted(keys) if fnmatch.fnmatchcase(k, pattern) and k not in out]
    return out


def ema(values: np.ndarray, span: float) -> np.ndarray:
    """Exponential moving average, bias-corrected so the first points are not pulled to 0."""
    alpha = 2.0 / (span + 1.0)
    out = np.empty_like(values, dtype=float)
    acc = norm = 0.0
    for i, v in enumerate(values):
        acc = (1 - alpha) * acc + alpha * v
        norm = (1 - alpha) * norm + alpha
        out[i] = acc / norm
    return out


def plot_stage_curves(stage: str, series: dict[str, tuple[np.ndarray, np.ndarray]], out_path: Path) -> Optional[Path]:
    """One PNG with a panel per quantity logged; None when the stage logged nothing."""
    panels = [(t, y, panel_keys(p, list(series))) for t, y, p in PANELS]
    panels = [p for p in panels if p[2]]
    if not panels:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = min(3, len(panels))
    rows = (len(panels) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols, 3.2 * rows + 0.5), dpi=100, squeeze=False)
    steps = max(len(s[0]) for s in series.values())
    how = "; faint: raw, solid: moving average" if steps >= SMOOTH_FROM else ""
    fig.suptitle(f"stage '{stage}': training curves ({steps} logged steps{how})", fontsize=13)
    for ax, (title, ylabel, keys) in zip(axes.flat, panels):
        for key in keys:
            xs, ys = series[key]
            if len(xs) >= SMOOTH_FROM:
                line, = ax.plot(xs, ys, alpha=0.25, linewidth=0.8)
                ax.plot(xs, ema(ys, len(xs) / 10), color=line.get_color(), linewidth=1.6, label=key)
            else:
                ax.plot(xs, ys, marker="o" if len(xs) < 8 else None, markersize=3, linewidth=1.4, label=key)
        ax.set_title(title, fontsize=11)
        ax.set_xlabel("optimizer step")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.ticklabel_format(axis="y", style="sci", scilimits=(-3, 4))  # lr 1e-4 reads as 1e-4, not 0.000100
        if len(keys) > 1:
            ax.legend(fontsize=8)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    fig.tight_layout()
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_path)
    plt.close(fig)
    return out_path
