"""Saving, loading and exporting the policy.

A checkpoint folder holds::

    aurora_model.json    format version, the ModelConfig, the media shape, the LLM config
    tokenizer/           the tokenizer (the tiny backbone's word-level one, or the backbone's)
    policy.safetensors   tiny: the policy's whole state dict under its module names; a pretrained
                         backbone: only its trainable tensors (LoRA, fully trained LLM modules,
                         projector, SAM's prompt side; encoders when trained), since everything
                         frozen is rebuilt from ``model.path`` and ``sam.path`` (gigabytes saved
                         per checkpoint)

``load_policy`` rebuilds the same architecture (a pretrained one from its original folders)
and loads the saved tensors strictly, so a round trip is exact. ``export_merged_llm`` writes
the LLM with LoRA merged, under Hugging Face names, as a folder vLLM loads;
``merged_llm_state_dict`` gives the same tensors in memory without disturbing training (for
weight broadcast), and ``merged_llm_sources`` which policy parameters each is computed from.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from aurora_rl.config.loader import build as build_config
from aurora_rl.config.schema import DataConfig, ModelConfig
from aurora_rl.model.build import MANIFEST, MediaShape, build_tiny_policy
from aurora_rl.model.factory import build_policy
from aurora_rl.model.policy import AVSegPolicy

FORMAT_VERSION = 1


def save_policy(policy: AVSegPolicy, tokenizer, cfg: ModelConfig, shape: MediaShape, folder: str | Path) -> Path:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    manifest = {
        "format": FORMAT_VERSION,
        "model": dataclasses.asdict(cfg),
        "media": dataclasses.asdict(shape),
        "llm_config": policy.base_lm.config.to_dict(),
    }
    tokenizer.save_pretrained(folder / "tokenizer")
    state = policy.state_dict() if cfg.backbone == "tiny" else trainable_state(policy)
    state = {k: v.detach().contiguous().clone() for k, v in state.items()}
    save_file(state, str(folder / "policy.safetensors"))
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2, default=str))
    return folder


def read_manifest(folder: str | Path) -> dict:
    path = Path(folder) / MANIFEST
    if not path.exists():
        raise FileNotFoundError(f"{folder}: not an aurora_rl checkpoint (no {MANIFEST})")
    manifest = json.loads(path.read_text())
    if manifest.get("format") != FORMAT_VERSION:
        raise ValueError(f"{path}: checkpoint format {manifest.get('format')!r} is not supported ({FORMAT_VERSION})")
    return manifest


def data_config_for(folder: str | Path, root: str | Path, **fields) -> DataConfig:
    """A ``DataConfig`` over ``root`` that reads clips the way the checkpoint was trained
    (frame, mask and fbank sizes from its manifest); ``fields`` set the rest (layout, max_samples)
    or override a size (``mask_size``: score at another resolution)."""
    media = read_manifest(folder)["media"]
    sizes = {"image_size": media["image_size"], "mask_size": media["mask_size"], "num_frames": media["num_frames"],
             "fbank_bins": media["fbank_bins"]}
    return DataConfig(root=str(Path(root).resolve()), **{**sizes, **fields})


def check_data_matches(folder: str | Path, data: DataConfig, where: str) -> None:
    """Refuse a data config whose clips differ from those the checkpoint predicts for: ground
    truth read at another mask size, frames at another size, another fbank width. Named before
    any worker starts (a learner rank would fail in its first step, its peers waiting for it)."""
    media = read_manifest(folder)["media"]
    wrong = [f"data.{key} is {getattr(data, key)}, the checkpoint's is {media[key]}"
             for key in ("mask_size", "image_size", "fbank_bins") if getattr(data, key) != media[key]]
    if wrong:
        raise ValueError(f"{where}: model.path {folder} was trained on other clips: {'; '.join(wrong)} "
                         f"(set them as the checkpoint's)")


def load_policy(folder: str | Path, overrides: ModelConfig | None = None):
    """Load (policy, tokenizer, ModelConfig, MediaShape) from a checkpoint folder."""
    from transformers import AutoTokenizer

    folder = Path(folder)
    manifest = read_manifest(folder)
    if isinstance(manifest["model"].get("tiny"), dict):  # saved before media_norm existed: built without it
        manifest["model"]["tiny"].setdefault("media_norm", False)
    cfg = overrides or build_config(ModelConfig, manifest["model"], {}, str(folder / MANIFEST))
    shape = MediaShape(**manifest["media"])
    if not (folder / "tokenizer").is_dir():  # else transformers would take the path for a hub id and go online
        raise FileNotFoundError(f"{folder / 'tokenizer'}: the checkpoint has no tokenizer folder")
    tokenizer = AutoTokenizer.from_pretrained(folder / "tokenizer", local_files_only=True)
    state = load_file(str(folder / "policy.safetensors"))
    if cfg.backbone == "tiny":
        policy = build_tiny_policy(cfg, tokenizer, shape)
        policy.load_state_dict(state, strict=True)
        return policy, tokenizer, cfg, shape
    policy, _ = build_policy(cfg, shape, tokenizer=tokenizer)
    trainable = trainable_state(policy).keys()
    if state.keys() != trainable:
        missing, extra = sorted(trainable - state.keys())[:5], sorted(state.keys() - trainable)[:5]
        raise ValueError(f"{folder}: saved tensors do not match the trainable parameters of the rebuilt policy "
                         f"(missing {missing}, extra {extra})")
    policy.load_state_dict(state, strict=False)
    return policy, tokenizer, cfg, shape


def trainable_state(policy: AVSegPolicy) -> dict[str, torch.Tensor]:
    """The parameters that training changes, by state-dict name."""
    return {name: p for name, p in policy.named_parameters() if p.requires_grad}


def merged_llm_state_dict(policy: AVSegPolicy, copy: bool = True, names: set[str] | None = None
                          ) -> dict[str, torch.Tensor]:
    """The LLM's full weights with LoRA merged, under the base model's Hugging Face names.

    Computed out of place (W + scaling * B @ A per LoRA layer, via peft's ``get_delta_weight``):
    training is not disturbed, not even by the rounding a merge/unmerge round trip would leave
    in the base weights after many broadcasts. ``copy=False`` returns the unmerged weights
    themselves (detached, not cloned): vLLM's reload takes them as they are. ``names`` keeps
    only those merged names (the others' LoRA deltas are not computed).
    """
    base = policy.base_lm
    lora_layers = {f"{name}.base_layer.weight": module for name, module in base.named_modules()
                   if hasattr(module, "get_delta_weight") and hasattr(module, "base_layer")}
    out = {}
    with torch.no_grad():
        for name, tensor in base.state_dict().items():
            if "lora_" in name or ".original_module." in name:
                continue
            merged_name = _merged_name(name)
            if names is not None and merged_name not in names:
                continue
            if name in lora_layers:
                module = lora_layers[name]
                tensor = tensor + sum(module.get_delta_weight(a) for a in module.active_adapters if a in module.lora_A)
            out[merged_name] = tensor.detach().clone() if copy else tensor.detach()
    return out


def merged_llm_sources(policy: AVSegPolicy) -> dict[str, frozenset[str]]:
    """Each merged LLM tensor (``merged_llm_state_dict``'s names and order) -> the policy
    parameters (state-dict names, as the learner sends them) it is computed from: a LoRA layer's
    base weight comes from itself and the layer's ``lora_*`` tensors, every other tensor from
    itself (a fully trained module from its trained copy)."""
    base = policy.base_lm
    prefix = next(name for name, module in policy.named_modules() if module is base)
    prefix = f"{prefix}." if prefix else ""
    lora = {f"{name}.base_layer.weight": [f"{prefix}{name}.{p}" for p, _ in module.named_parameters() if "lora_" in p]
            for name, module in base.named_modules()
            if hasattr(module, "get_delta_weight") and hasattr(module, "base_layer")}
    return {_merged_name(name): frozenset([f"{prefix}{name}", *lora.get(name, ())])
            for name in base.state_dict() if "lora_" not in name and ".original_module." not in name}


def _merged_name(name: str) -> str:
    """A base-model state-dict name under peft -> the plain Hugging Face name."""
    return name.replace(".base_layer.", ".").replace(".modules_to_save.default.", ".")


def export_merged_llm(policy: AVSegPolicy, tokenizer, folder: str | Path, dtype: str = "float32") -> Path:
    """Write the merged LLM as a Hugging Face folder (config, safetensors, tokenizer) for vLLM."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    config = policy.base_lm.config
    config.torch_dtype = dtype
    config.save_pretrained(folder)
    target = getattr(torch, dtype)
    state = {k: v.to(target).contiguous() for k, v in merged_llm_state_dict(policy).items()}
    save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})
    tokenizer.save_pretrained(folder)
    return folder
