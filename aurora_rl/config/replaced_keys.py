"""Keys that existed once, by stage, with what replaces them.

A config (file or override) that still uses one fails with this message instead of "unknown
key": a renamed key names its new place, a removed research option says where its results and
the commit that still has it are (docs/FINDINGS.md).
"""

from __future__ import annotations


def _moved(keys: dict[str, str]) -> dict[str, str]:
    return {old: f"renamed: now {new}" for old, new in keys.items()}


_OBJECTIVE_MOVED = _moved({f"learner.{k}": f"objective.{k}" for k in
                           ("adv_eps", "clip_low", "clip_high", "kl_coef", "mask_bce", "mask_dice", "mask_min_iou")})
_OBJECTIVE_MOVED.update({
    "learner.normalize_std": "replaced by objective.advantage: grpo (normalize_std true) or centered (false)",
    "learner.every_object_ce": "renamed: now objective.mix_ce",
})

_REMOVED = "a research option, removed (docs/FINDINGS.md names the commit that still has it)"
_TINY_REMOVED = {"model.tiny.text_pretrain.list_order": f"{_REMOVED}; lists run left to right"}
_SFT_REPLACED = {
    **_TINY_REMOVED,
    "trainer.blind_video_fraction": _REMOVED,
}
for section in ("cot", "corrector"):
    _SFT_REPLACED.update({
        f"{section}.every_object_share": "renamed: now mix.every_object_share",
        f"{section}.skip_unasked_scenes": "renamed: now mix.skip_unasked_scenes",
        f"{section}.every_object_order": f"{_REMOVED}; lists run left to right",
        f"{section}.unasked_scenes_as": f"{_REMOVED}; a row left out is asked \"every object .\" instead",
    })

REPLACED_KEYS: dict[str, dict[str, str]] = {
    "sft": {k: v for k, v in _SFT_REPLACED.items() if not k.startswith("corrector.")},
    "reflect": {k: v for k, v in _SFT_REPLACED.items() if not k.startswith("cot.")},
    "grpo": {**_TINY_REMOVED, **_OBJECTIVE_MOVED,
             "learner.every_object_rows": "renamed: now mix.every_object_rows",
             "learner.every_object_data": "renamed: now mix.every_object_data",
             "learner.every_object_order": f"{_REMOVED}; lists run left to right"},
    "eval": dict(_TINY_REMOVED),
}
