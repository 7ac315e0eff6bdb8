"""Build transformers' ``SamModel`` at a chosen input size: tiny random, HF folder or Meta ``.pth``.

A Meta segment-anything checkpoint (``sam_vit_h_4b8939.pth``: a plain state dict) is converted by
renaming its keys to the HF layout; its architecture is read off the tensor shapes. Either format
can then be refitted to another input size (AURORA: ViT-H at 224 px instead of 1024): the absolute
position embedding is resized bicubically to the new patch grid, and the relative position tables
of the global-attention layers linearly to ``2 * grid - 1``, which is what segment-anything's
``get_rel_pos`` would compute at run time. Windowed layers keep their tables (the window does not
change with the image). Nothing is ever fetched from the hub.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import torch
import torch.nn.functional as F
from transformers import SamConfig, SamMaskDecoderConfig, SamModel, SamPromptEncoderConfig, SamVisionConfig

TIED_PE_KEYS = ("shared_image_embedding.positional_embedding", "prompt_encoder.shared_embedding.positional_embedding")

# Meta name -> HF name, applied in order; the MLP heads are renamed separately (their depth varies).
_META_RENAMES = [
    (r"^image_encoder\.", "vision_encoder."),
    (r"\.patch_embed\.proj\.", ".patch_embed.projection."),
    (r"\.blocks\.(\d+)\.norm(\d)\.", r".layers.\1.layer_norm\2."),
    (r"\.blocks\.", ".layers."),
    (r"\.neck\.0\.", ".neck.conv1."),
    (r"\.neck\.1\.", ".neck.layer_norm1."),
    (r"\.neck\.2\.", ".neck.conv2."),
    (r"\.neck\.3\.", ".neck.layer_norm2."),
    (r"^prompt_encoder\.pe_layer\.positional_encoding_gaussian_matrix$", TIED_PE_KEYS[0]),
    (r"\.point_embeddings\.", ".point_embed."),
    (r"\.mask_downscaling\.0\.", ".mask_embed.conv1."),
    (r"\.mask_downscaling\.1\.", ".mask_embed.layer_norm1."),
    (r"\.mask_downscaling\.3\.", ".mask_embed.conv2."),
    (r"\.mask_downscaling\.4\.", ".mask_embed.layer_norm2."),
    (r"\.mask_downscaling\.6\.", ".mask_embed.conv3."),
    (r"\.transformer\.layers\.(\d+)\.norm(\d)\.", r".transformer.layers.\1.layer_norm\2."),
    (r"\.transformer\.norm_final_attn\.", ".transformer.layer_norm_final_attn."),
    (r"\.output_upscaling\.0\.", ".upscale_conv1."),
    (r"\.output_upscaling\.1\.", ".upscale_layer_norm."),
    (r"\.output_upscaling\.3\.", ".upscale_conv2."),
]
_META_MLP = re.compile(r"^(mask_decoder\.(?:iou_prediction_head|output_hypernetworks_mlps\.\d+))\.layers\.(\d+)\.(.*)$")


def tiny_sam_config(
    input_size: int = 224, patch_size: int = 16, hidden_size: int = 64, num_layers: int = 2, num_heads: int = 2,
    window_size: int = 7, prompt_dim: int = 256,
) -> SamConfig:
    """A SAM small enough for CPU tests; the last layer uses global attention, as ViT-B/L/H do."""
    _check_input_size(input_size, patch_size)
    vision = SamVisionConfig(
        hidden_size=hidden_size, num_hidden_layers=num_layers, num_attention_heads=num_heads, mlp_dim=2 * hidden_size,
        image_size=input_size, patch_size=patch_size, window_size=window_size, global_attn_indexes=[num_layers - 1],
        output_channels=prompt_dim, num_pos_feats=prompt_dim // 2,
        initializer_range=0.02,  # HF's default 1e-10 would make a random encoder's features all equal
    )
    prompt = SamPromptEncoderConfig(hidden_size=prompt_dim, image_size=input_size, patch_size=patch_size)
    decoder = SamMaskDecoderConfig(hidden_size=prompt_dim, mlp_dim=2 * prompt_dim, iou_head_hidden_dim=prompt_dim)
    return SamConfig(vision_config=vision, prompt_encoder_config=prompt, mask_decoder_config=decoder)


def build_tiny_sam(input_size: int = 224, seed: int = 0, **sizes) -> SamModel:
    """A randomly initialised tiny SAM (``sizes``: see ``tiny_sam_config``), the same for the same seed."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        sam = SamModel(tiny_sam_config(input_size, **sizes))
        # HF scales the random Fourier features by hidden/2, which aliases on small grids; Meta uses 1.
        torch.nn.init.normal_(sam.shared_image_embedding.positional_embedding, std=1.0)
    return sam.eval()


def load_sam(
    path: str | Path | None, input_size: int | None = None, *, dtype: torch.dtype | None = None,
    global_attn_indexes: list[int] | None = None, window_size: int | None = None,
    num_attention_heads: int | None = None,
) -> SamModel:
    """Load SAM from a local HF folder or a Meta ``.pth`` file, fitted to ``input_size`` pixels.

    ``path`` None gives the tiny random SAM. ``input_size`` None keeps the checkpoint's own size.
    The keyword overrides apply to Meta files only, where the ViT layout is otherwise inferred
    from tensor shapes (needed only for unusual checkpoints, see ``meta_sam_config``).
    """
    if path is None:
        sam = build_tiny_sam(input_size or 224)
        return sam if dtype is None else sam.to(dtype)
    path = Path(path)
    if path.is_dir():
        config = SamConfig.from_pretrained(path, local_files_only=True)
        state_dict = _read_hf_weights(path)
    elif path.is_file():
        meta = torch.load(path, map_location="cpu", weights_only=True)
        config = meta_sam_config(meta, global_attn_indexes=global_attn_indexes, window_size=window_size,
                                 num_attention_heads=num_attention_heads)
        state_dict = meta_to_hf_state_dict(meta)
    else:
        raise FileNotFoundError(f"SAM checkpoint {path} does not exist (an HF folder or a Meta .pth file)")
    state_dict, config = fit_to_input_size(state_dict, config, input_size or config.vision_config.image_size)
    if dtype is not None:  # after resizing, which then interpolates the stored precision
        state_dict = {k: v.to(dtype) if v.is_floating_point() else v for k, v in state_dict.items()}
    return _instantiate(config, state_dict)


def meta_to_hf_state_dict(meta: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename a Meta segment-anything state dict to ``SamModel``'s parameter names."""
    depth: dict[str, int] = {}
    for key in meta:
        if match := _META_MLP.match(key):
            depth[match[1]] = max(depth.get(match[1], 0), int(match[2]) + 1)
    out = {}
    for key, value in meta.items():
        if key in ("pixel_mean", "pixel_std"):  # preprocessing constants, not weights
            continue
        if match := _META_MLP.match(key):
            index, last = int(match[2]), depth[match[1]] - 1
            layer = "proj_in" if index == 0 else "proj_out" if index == last else f"layers.{index - 1}"
            key = f"{match[1]}.{layer}.{match[3]}"
        for pattern, replacement in _META_RENAMES:
            key = re.sub(pattern, replacement, key)
        out[key] = value
    out[TIED_PE_KEYS[1]] = out[TIED_PE_KEYS[0]]
    return out


def meta_sam_config(
    meta: dict[str, torch.Tensor], *, global_attn_indexes: list[int] | None = None, window_size: int | None = None,
    num_attention_heads: int | None = None,
) -> SamConfig:
    """The ``SamConfig`` of a Meta state dict, read off its tensor shapes.

    Heads come from the relative position tables (their width is the head dim); global layers are
    those whose table spans the whole pretraining grid. A checkpoint whose window equals its grid,
    or one without relative positions, cannot be told apart from shapes: pass the overrides.
    """
    if "image_encoder.patch_embed.proj.weight" not in meta:
        raise ValueError(f"not a segment-anything state dict (first keys: {list(meta)[:3]})")
    patch_w = meta["image_encoder.patch_embed.proj.weight"]
    hidden, patch = patch_w.shape[0], patch_w.shape[-1]
    depth = 1 + max(int(k.split(".")[2]) for k in meta if k.startswith("image_encoder.blocks."))
    tables = [meta.get(f"image_encoder.blocks.{i}.attn.rel_pos_h") for i in range(depth)]
    use_rel_pos = tables[0] is not None
    if not use_rel_pos and None in (global_attn_indexes, window_size, num_attention_heads):
        raise ValueError("this SAM checkpoint has no relative position tables to read its layout from: "
                         "pass global_attn_indexes, window_size and num_attention_heads")
    if "image_encoder.pos_embed" in meta:
        grid = meta["image_encoder.pos_embed"].shape[1]
    elif use_rel_pos:
        grid = (max(t.shape[0] for t in tables) + 1) // 2
    else:
        grid = 1024 // patch  # nothing in the weights depends on the size; Meta's default
    if global_attn_indexes is None:
        global_attn_indexes = [i for i, t in enumerate(tables) if t.shape[0] == 2 * grid - 1]
    if window_size is None:
        windowed = [tables[i].shape[0] for i in range(depth) if i not in global_attn_indexes]
        window_size = (windowed[0] + 1) // 2 if windowed else grid  # all global: the window is never used
    if num_attention_heads is None:
        num_attention_heads = hidden // tables[0].shape[1]
    vision = SamVisionConfig(
        hidden_size=hidden, num_hidden_layers=depth, num_attention_heads=num_attention_heads,
        mlp_dim=meta["image_encoder.blocks.0.mlp.lin1.weight"].shape[0], image_size=grid * patch, patch_size=patch,
        window_size=window_size, global_attn_indexes=global_attn_indexes, use_rel_pos=use_rel_pos,
        use_abs_pos="image_encoder.pos_embed" in meta, qkv_bias="image_encoder.blocks.0.attn.qkv.bias" in meta,
        output_channels=meta["image_encoder.neck.0.weight"].shape[0],
        num_pos_feats=meta["prompt_encoder.pe_layer.positional_encoding_gaussian_matrix"].shape[1],
    )
    prompt = SamPromptEncoderConfig(
        hidden_size=meta["prompt_encoder.no_mask_embed.weight"].shape[1], image_size=grid * patch, patch_size=patch,
        mask_input_channels=meta["prompt_encoder.mask_downscaling.3.weight"].shape[0],
        num_point_embeddings=sum(1 for k in meta if k.startswith("prompt_encoder.point_embeddings.")),
    )
    prefix = "mask_decoder.transformer.layers."
    decoder_hidden = meta["mask_decoder.iou_token.weight"].shape[1]
    decoder = SamMaskDecoderConfig(
        hidden_size=decoder_hidden,
        num_hidden_layers=1 + max(int(k[len(prefix):].split(".")[0]) for k in meta if k.startswith(prefix)),
        mlp_dim=meta[prefix + "0.mlp.lin1.weight"].shape[0],
        attention_downsample_rate=decoder_hidden // meta[prefix + "0.cross_attn_token_to_image.q_proj.weight"].shape[0],
        num_multimask_outputs=meta["mask_decoder.mask_tokens.weight"].shape[0] - 1,
        iou_head_depth=sum(1 for k in meta if re.match(r"mask_decoder\.iou_prediction_head\.layers\.\d+\.weight", k)),
        iou_head_hidden_dim=meta["mask_decoder.iou_prediction_head.layers.0.weight"].shape[0],
        layer_norm_eps=1e-5,  # Meta's two-way blocks use nn.LayerNorm's default; HF's default is 1e-6
    )
    return SamConfig(vision_config=vision, prompt_encoder_config=prompt, mask_decoder_config=decoder)


def fit_to_input_size(
    state_dict: dict[str, torch.Tensor], config: SamConfig, input_size: int,
) -> tuple[dict[str, torch.Tensor], SamConfig]:
    """Resize the size-dependent position tables of an HF-named state dict to ``input_size`` pixels.

    Returns a new state dict (unchanged tensors shared) and a new config; inputs are not modified.
    """
    patch = config.vision_config.patch_size
    _check_input_size(input_size, patch)
    old_grid, new_grid = config.vision_config.image_size // patch, input_size // patch
    config = copy.deepcopy(config)
    config.vision_config.image_size = input_size
    prompt = config.prompt_encoder_config
    prompt.image_size, prompt.patch_size, prompt.image_embedding_size = input_size, patch, new_grid
    if old_grid == new_grid:
        return state_dict, config
    state_dict = dict(state_dict)
    if "vision_encoder.pos_embed" in state_dict:
        state_dict["vision_encoder.pos_embed"] = resize_pos_embed(state_dict["vision_encoder.pos_embed"], new_grid)
    for layer in config.vision_config.global_attn_indexes:
        for axis in "hw":
            key = f"vision_encoder.layers.{layer}.attn.rel_pos_{axis}"
            if key in state_dict:
                state_dict[key] = resize_rel_pos(state_dict[key], 2 * new_grid - 1)
    return state_dict, config


def resize_pos_embed(pos_embed: torch.Tensor, grid: int) -> torch.Tensor:
    """Bicubic resize of an absolute position embedding [1, g, g, C] -> [1, grid, grid, C]."""
    resized = F.interpolate(pos_embed.permute(0, 3, 1, 2).float(), size=(grid, grid), mode="bicubic",
                            align_corners=False)
    return resized.permute(0, 2, 3, 1).to(pos_embed.dtype).contiguous()


def resize_rel_pos(table: torch.Tensor, length: int) -> torch.Tensor:
    """Linear resize of a relative position table [L, head_dim] -> [length, head_dim] (as ``get_rel_pos``)."""
    resized = F.interpolate(table.float().T[None], size=length, mode="linear", align_corners=False)
    return resized[0].T.to(table.dtype).contiguous()


def _check_input_size(input_size: int, patch: int) -> None:
    if input_size % patch:
        raise ValueError(f"SAM input_size {input_size} is not a multiple of the patch size {patch}")


def _read_hf_weights(folder: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    for index_name, single_name in (("model.safetensors.index.json", "model.safetensors"),
                                    ("pytorch_model.bin.index.json", "pytorch_model.bin")):
        if (folder / index_name).exists():
            shards = sorted(set(json.loads((folder / index_name).read_text())["weight_map"].values()))
        elif (folder / single_name).exists():
            shards = [single_name]
        else:
            continue
        state_dict = {}
        for shard in shards:
            if shard.endswith(".safetensors"):
                state_dict.update(load_file(folder / shard))
            else:
                state_dict.update(torch.load(folder / shard, map_location="cpu", weights_only=True))
        return state_dict
    raise FileNotFoundError(f"{folder}: no model.safetensors or pytorch_model.bin (sharded or not)")


def _instantiate(config: SamConfig, state_dict: dict[str, torch.Tensor]) -> SamModel:
    state_dict = dict(state_dict)
    for key, twin in (TIED_PE_KEYS, TIED_PE_KEYS[::-1]):  # save_pretrained keeps one of a tied pair
        if key not in state_dict and twin in state_dict:
            state_dict[key] = state_dict[twin]
    # Built on the meta device and given the loaded tensors: ViT-H is not initialised only to be overwritten.
    with torch.device("meta"):
        sam = SamModel(config)
    sam.load_state_dict(state_dict, strict=True, assign=True)
    sam.prompt_encoder.shared_embedding.positional_embedding = sam.shared_image_embedding.positional_embedding
    return sam.eval()
