"""An independent SAM forward over raw segment-anything (Meta) tensors, and a tiny random Meta checkpoint.

Written from segment-anything's modeling code (image_encoder.py, prompt_encoder.py, mask_decoder.py,
transformer.py) in plain functional torch, sharing nothing with transformers or aurora_rl. It runs
a checkpoint at any input size the way segment-anything would after the usual LISA-style resize:
the absolute position embedding interpolated bicubically, relative tables linearly at run time
(``get_rel_pos``). Covered: preprocessing, the whole image encoder (patch embedding, windowed and
global attention with relative positions, neck), point and mask prompt encoding, the whole mask
decoder (two-way transformer, upscaling, hypernetworks, IoU head) and mask post-processing.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

MEAN = torch.tensor([123.675, 116.28, 103.53]).view(1, 3, 1, 1)
STD = torch.tensor([58.395, 57.12, 57.375]).view(1, 3, 1, 1)


def random_meta_state_dict(
    seed: int = 0, *, image_size: int = 128, patch: int = 16, embed: int = 64, depth: int = 3, heads: int = 2,
    window: int = 3, global_blocks: tuple[int, ...] = (1,), prompt_dim: int = 64, decoder_depth: int = 2,
    decoder_mlp: int = 96, mask_in_chans: int = 16, multimask: int = 3, iou_hidden: int = 48,
    shapes_only: bool = False,
) -> dict[str, torch.Tensor]:
    """Random tensors under segment-anything's exact key names and shapes (a ``Sam`` state dict).

    ``shapes_only`` gives meta-device tensors: a full-size (ViT-H) layout without allocating it.
    """
    gen = torch.Generator().manual_seed(seed)
    sd: dict[str, torch.Tensor] = {}

    def rand(*shape, std):
        if shapes_only:
            return torch.empty(*shape, device="meta")
        return torch.randn(*shape, generator=gen) * std

    def linear(name, fan_in, fan_out, bias=True):
        sd[name + ".weight"] = rand(fan_out, fan_in, std=fan_in ** -0.5)
        if bias:
            sd[name + ".bias"] = rand(fan_out, std=0.1)

    def norm(name, dim):
        sd[name + ".weight"] = 1 + rand(dim, std=0.1)
        sd[name + ".bias"] = rand(dim, std=0.1)

    def conv(name, cin, cout, k, bias=True, transposed=False):
        sd[name + ".weight"] = rand(*((cin, cout) if transposed else (cout, cin)), k, k, std=(cin * k * k) ** -0.5)
        if bias:
            sd[name + ".bias"] = rand(cout, std=0.1)

    grid, head_dim = image_size // patch, embed // heads
    conv("image_encoder.patch_embed.proj", 3, embed, patch)
    sd["image_encoder.pos_embed"] = rand(1, grid, grid, embed, std=0.5)
    for i in range(depth):
        p = f"image_encoder.blocks.{i}."
        size = grid if i in global_blocks else window
        norm(p + "norm1", embed)
        linear(p + "attn.qkv", embed, 3 * embed)
        linear(p + "attn.proj", embed, embed)
        sd[p + "attn.rel_pos_h"] = rand(2 * size - 1, head_dim, std=0.5)
        sd[p + "attn.rel_pos_w"] = rand(2 * size - 1, head_dim, std=0.5)
        norm(p + "norm2", embed)
        linear(p + "mlp.lin1", embed, 4 * embed)
        linear(p + "mlp.lin2", 4 * embed, embed)
    conv("image_encoder.neck.0", embed, prompt_dim, 1, bias=False)
    norm("image_encoder.neck.1", prompt_dim)
    conv("image_encoder.neck.2", prompt_dim, prompt_dim, 3, bias=False)
    norm("image_encoder.neck.3", prompt_dim)

    sd["prompt_encoder.pe_layer.positional_encoding_gaussian_matrix"] = rand(2, prompt_dim // 2, std=1.0)
    for i in range(4):
        sd[f"prompt_encoder.point_embeddings.{i}.weight"] = rand(1, prompt_dim, std=1.0)
    sd["prompt_encoder.not_a_point_embed.weight"] = rand(1, prompt_dim, std=1.0)
    conv("prompt_encoder.mask_downscaling.0", 1, mask_in_chans // 4, 2)
    norm("prompt_encoder.mask_downscaling.1", mask_in_chans // 4)
    conv("prompt_encoder.mask_downscaling.3", mask_in_chans // 4, mask_in_chans, 2)
    norm("prompt_encoder.mask_downscaling.4", mask_in_chans)
    conv("prompt_encoder.mask_downscaling.6", mask_in_chans, prompt_dim, 1)
    sd["prompt_encoder.no_mask_embed.weight"] = rand(1, prompt_dim, std=1.0)

    d, m = prompt_dim, "mask_decoder."
    sd[m + "iou_token.weight"] = rand(1, d, std=1.0)
    sd[m + "mask_tokens.weight"] = rand(multimask + 1, d, std=1.0)

    def attention(name, internal):
        for proj in ("q_proj", "k_proj", "v_proj"):
            linear(f"{name}.{proj}", d, internal)
        linear(f"{name}.out_proj", internal, d)

    for i in range(decoder_depth):
        p = f"{m}transformer.layers.{i}."
        attention(p + "self_attn", d)
        norm(p + "norm1", d)
        attention(p + "cross_attn_token_to_image", d // 2)
        norm(p + "norm2", d)
        linear(p + "mlp.lin1", d, decoder_mlp)
        linear(p + "mlp.lin2", decoder_mlp, d)
        norm(p + "norm3", d)
        norm(p + "norm4", d)
        attention(p + "cross_attn_image_to_token", d // 2)
    attention(m + "transformer.final_attn_token_to_image", d // 2)
    norm(m + "transformer.norm_final_attn", d)
    conv(m + "output_upscaling.0", d, d // 4, 2, transposed=True)
    norm(m + "output_upscaling.1", d // 4)
    conv(m + "output_upscaling.3", d // 4, d // 8, 2, transposed=True)
    for i in range(multimask + 1):
        for j, (fi, fo) in enumerate([(d, d), (d, d), (d, d // 8)]):
            linear(f"{m}output_hypernetworks_mlps.{i}.layers.{j}", fi, fo)
    for j, (fi, fo) in enumerate([(d, iou_hidden), (iou_hidden, iou_hidden), (iou_hidden, multimask + 1)]):
        linear(f"{m}iou_prediction_head.layers.{j}", fi, fo)
    return sd


def _ln2d(x, sd, name, eps=1e-6):
    u = x.mean(1, keepdim=True)
    s = (x - u).pow(2).mean(1, keepdim=True)
    return sd[name + ".weight"][:, None, None] * (x - u) / torch.sqrt(s + eps) + sd[name + ".bias"][:, None, None]


def _ln(x, sd, name, eps):
    return F.layer_norm(x, x.shape[-1:], sd[name + ".weight"], sd[name + ".bias"], eps)


def _lin(x, sd, name):
    return F.linear(x, sd[name + ".weight"], sd.get(name + ".bias"))


def _rel_table(size, table):
    """segment-anything's get_rel_pos for equal query/key sizes: [size, size, head_dim]."""
    if table.shape[0] != 2 * size - 1:
        table = F.interpolate(table.T[None], size=2 * size - 1, mode="linear")[0].T
    idx = torch.arange(size)[:, None] - torch.arange(size)[None, :] + size - 1
    return table[idx]


def _vit_attention(x, sd, p, heads):
    b, h, w, c = x.shape
    hd = c // heads
    q, k, v = _lin(x, sd, p + "qkv").reshape(b, h * w, 3, heads, hd).permute(2, 0, 3, 1, 4)  # [b, heads, hw, hd]
    logits = q @ k.transpose(-1, -2) / math.sqrt(hd)
    qg = q.reshape(b, heads, h, w, hd)
    rel_h = torch.einsum("bnyxc,ykc->bnyxk", qg, _rel_table(h, sd[p + "rel_pos_h"]))
    rel_w = torch.einsum("bnyxc,xkc->bnyxk", qg, _rel_table(w, sd[p + "rel_pos_w"]))
    logits = (logits.view(b, heads, h, w, h, w) + rel_h[..., :, None] + rel_w[..., None, :]).view(b, heads, h * w, -1)
    out = (logits.softmax(-1) @ v).transpose(1, 2).reshape(b, h, w, c)
    return _lin(out, sd, p + "proj")


def _windowed(fn, x, window):
    """Apply ``fn`` to non-overlapping window x window tiles of zero-padded [b, h, w, c] tokens."""
    b, h, w, c = x.shape
    ph, pw = -h % window, -w % window
    x = F.pad(x, (0, 0, 0, pw, 0, ph))
    nh, nw = (h + ph) // window, (w + pw) // window
    tiles = x.view(b, nh, window, nw, window, c).transpose(2, 3).reshape(-1, window, window, c)
    out = fn(tiles).view(b, nh, nw, window, window, c).transpose(2, 3).reshape(b, nh * window, nw * window, c)
    return out[:, :h, :w]


def image_encoder(sd, pixels, *, heads, window, global_blocks):
    """[B, 3, S, S] normalised pixels -> [B, C, S/p, S/p] image embeddings."""
    weight = sd["image_encoder.patch_embed.proj.weight"]
    x = F.conv2d(pixels, weight, sd["image_encoder.patch_embed.proj.bias"], stride=weight.shape[-1]).permute(0, 2, 3, 1)
    pos = sd["image_encoder.pos_embed"]
    if pos.shape[1:3] != x.shape[1:3]:
        pos = F.interpolate(pos.permute(0, 3, 1, 2), size=x.shape[1:3], mode="bicubic", align_corners=False)
        pos = pos.permute(0, 2, 3, 1)
    x = x + pos
    depth = 1 + max(int(k.split(".")[2]) for k in sd if k.startswith("image_encoder.blocks."))
    for i in range(depth):
        p = f"image_encoder.blocks.{i}."

        def attend(t, p=p):
            return _vit_attention(t, sd, p + "attn.", heads)

        y = _ln(x, sd, p + "norm1", 1e-6)
        x = x + (attend(y) if i in global_blocks else _windowed(attend, y, window))
        x = x + _lin(F.gelu(_lin(_ln(x, sd, p + "norm2", 1e-6), sd, p + "mlp.lin1")), sd, p + "mlp.lin2")
    x = x.permute(0, 3, 1, 2)
    x = _ln2d(F.conv2d(x, sd["image_encoder.neck.0.weight"]), sd, "image_encoder.neck.1")
    return _ln2d(F.conv2d(x, sd["image_encoder.neck.2.weight"], padding=1), sd, "image_encoder.neck.3")


def _pe(sd, coords):
    """Random Fourier features of coords in [0, 1]^2: [..., 2] -> [..., C]."""
    proj = 2 * math.pi * ((2 * coords - 1) @ sd["prompt_encoder.pe_layer.positional_encoding_gaussian_matrix"])
    return torch.cat([proj.sin(), proj.cos()], dim=-1)


def dense_pe(sd, size):
    """[1, C, size, size] positional encoding of the image embedding grid."""
    centers = (torch.arange(size, dtype=torch.float32) + 0.5) / size
    y, x = torch.meshgrid(centers, centers, indexing="ij")
    return _pe(sd, torch.stack([x, y], -1)).permute(2, 0, 1)[None]


def embed_points(sd, points, labels, input_size):
    """Points [B, n, 2] in input pixels, labels [B, n] (1 fg, 0 bg) -> [B, n + 1, C] (a padding point added)."""
    points = torch.cat([points + 0.5, torch.zeros_like(points[:, :1])], 1) / input_size
    labels = torch.cat([labels, -torch.ones_like(labels[:, :1])], 1)[..., None]
    emb = _pe(sd, points)
    emb = torch.where(labels == -1, sd["prompt_encoder.not_a_point_embed.weight"], emb)
    emb = emb + (labels == 0) * sd["prompt_encoder.point_embeddings.0.weight"]
    return emb + (labels == 1) * sd["prompt_encoder.point_embeddings.1.weight"]


def embed_mask(sd, masks):
    """[B, 1, 4h, 4w] mask logits -> [B, C, h, w] dense prompt."""
    p = "prompt_encoder.mask_downscaling."
    x = F.gelu(_ln2d(F.conv2d(masks, sd[p + "0.weight"], sd[p + "0.bias"], stride=2), sd, p + "1"))
    x = F.gelu(_ln2d(F.conv2d(x, sd[p + "3.weight"], sd[p + "3.bias"], stride=2), sd, p + "4"))
    return F.conv2d(x, sd[p + "6.weight"], sd[p + "6.bias"])


def _attn(sd, p, q, k, v, heads=8):
    q, k, v = (_lin(t, sd, p + name) for t, name in ((q, "q_proj"), (k, "k_proj"), (v, "v_proj")))
    b, nq, d = q.shape
    q, k, v = (t.reshape(b, -1, heads, d // heads).transpose(1, 2) for t in (q, k, v))
    out = (q @ k.transpose(-1, -2) / math.sqrt(d // heads)).softmax(-1) @ v
    return _lin(out.transpose(1, 2).reshape(b, nq, d), sd, p + "out_proj")


def _mlp_head(sd, p, x):
    n = sum(1 for k in sd if k.startswith(p + "layers.") and k.endswith(".weight"))
    for j in range(n):
        x = _lin(x, sd, f"{p}layers.{j}")
        x = F.relu(x) if j < n - 1 else x
    return x


def mask_decoder(sd, image_emb, sparse, dense, multimask):
    """Image embeddings [B, C, h, w], sparse [B, n, C], dense [B or 1, C, h, w] -> masks [B, M, 4h, 4w], iou [B, M]."""
    m, t = "mask_decoder.", "mask_decoder.transformer."
    b, c, h, w = image_emb.shape
    out_tokens = torch.cat([sd[m + "iou_token.weight"], sd[m + "mask_tokens.weight"]])
    tokens = torch.cat([out_tokens.expand(b, -1, -1), sparse], 1)
    keys = (image_emb + dense).flatten(2).transpose(1, 2)
    key_pe = dense_pe(sd, h).flatten(2).transpose(1, 2)
    queries = tokens
    depth = 1 + max(int(k[len(t) + 7:].split(".")[0]) for k in sd if k.startswith(t + "layers."))
    for i in range(depth):
        p = f"{t}layers.{i}."
        if i == 0:
            queries = _attn(sd, p + "self_attn.", queries, queries, queries)
        else:
            q = queries + tokens
            queries = queries + _attn(sd, p + "self_attn.", q, q, queries)
        queries = _ln(queries, sd, p + "norm1", 1e-5)
        queries = queries + _attn(sd, p + "cross_attn_token_to_image.", queries + tokens, keys + key_pe, keys)
        queries = _ln(queries, sd, p + "norm2", 1e-5)
        mlp = _lin(F.relu(_lin(queries, sd, p + "mlp.lin1")), sd, p + "mlp.lin2")
        queries = _ln(queries + mlp, sd, p + "norm3", 1e-5)
        keys = keys + _attn(sd, p + "cross_attn_image_to_token.", keys + key_pe, queries + tokens, queries)
        keys = _ln(keys, sd, p + "norm4", 1e-5)
    queries = queries + _attn(sd, t + "final_attn_token_to_image.", queries + tokens, keys + key_pe, keys)
    queries = _ln(queries, sd, t + "norm_final_attn", 1e-5)

    src = keys.transpose(1, 2).reshape(b, c, h, w)
    u = "mask_decoder.output_upscaling."
    up = F.gelu(_ln2d(F.conv_transpose2d(src, sd[u + "0.weight"], sd[u + "0.bias"], stride=2), sd, u + "1"))
    up = F.gelu(F.conv_transpose2d(up, sd[u + "3.weight"], sd[u + "3.bias"], stride=2))
    num_masks = sd[m + "mask_tokens.weight"].shape[0]
    hyper = [_mlp_head(sd, f"{m}output_hypernetworks_mlps.{i}.", queries[:, 1 + i]) for i in range(num_masks)]
    hyper = torch.stack(hyper, 1)
    masks = (hyper @ up.flatten(2)).view(b, num_masks, *up.shape[-2:])
    iou = _mlp_head(sd, m + "iou_prediction_head.", queries[:, 0])
    keep = slice(1, None) if multimask else slice(0, 1)
    return masks[:, keep], iou[:, keep]


def preprocess(frames, input_size):
    """[T, 3, H, W] in [0, 1] -> [T, 3, S, S]: ResizeLongestSide.apply_image_torch + Sam.preprocess."""
    h, w = frames.shape[-2:]
    scale = input_size / max(h, w)
    size = (int(h * scale + 0.5), int(w * scale + 0.5))
    x = F.interpolate(frames * 255, size=size, mode="bilinear", align_corners=False, antialias=True)
    x = (x - MEAN) / STD
    return F.pad(x, (0, input_size - size[1], 0, input_size - size[0]))


def postprocess(low_res, input_size, out_size):
    """Sam.postprocess_masks: [B, M, 4h, 4w] -> [B, M, H, W]."""
    h, w = out_size
    scale = input_size / max(h, w)
    x = F.interpolate(low_res, (input_size, input_size), mode="bilinear", align_corners=False)
    x = x[..., : int(h * scale + 0.5), : int(w * scale + 0.5)]
    return F.interpolate(x, out_size, mode="bilinear", align_corners=False)
