"""A tiny random VideoLLaMA2.1-AV checkpoint in the released layout, and an independent forward over it.

The tensors are written under the names the released checkpoint uses (VideoLLaMA2's
``model.mm_projector.*`` from timm's RegStage, ``model.audio_tower.*`` from BEATs as fairseq names
it, ``model.mm_projector_a.{0,2}``, the Qwen2 LLM as transformers saves it), listed here by hand
rather than taken from aurora_rl's modules, and sharded with an index file. SigLIP is a full
transformers ``SiglipModel`` (text tower included) saved beside the model, as
google/siglip-so400m-patch14-384 would be.

The reference forward is plain functional torch over the raw tensors, written from VideoLLaMA2's
code (``projector.py``, ``beats/BEATs.py``, ``beats/backbone.py`` in its T x B x C layout with
the scaled-query trick), and transformers' own ``SiglipVisionModel`` for the vision tower.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from tests.model.backbone_fixtures import write_qwen2_tokenizer

SIGLIP = dict(hidden=48, layers=3, heads=2, mlp=96, image=56, patch=14)
LLM = dict(hidden=128, inter=256, layers=2, heads=4, kv=2)
BEATS = dict(patch=16, embed=32, width=64, layers=2, heads=2, ffn=128, conv_pos=16, groups=4, buckets=32)
STC_DEPTH = 4


def _rand(gen, *shape, std=0.1):
    return torch.randn(*shape, generator=gen) * std


def _norm(gen, sd, name, dim):
    sd[name + ".weight"] = 1 + _rand(gen, dim)
    sd[name + ".bias"] = _rand(gen, dim)


def stc_tensors(gen, cin: int, hidden: int) -> dict[str, torch.Tensor]:
    """``model.mm_projector.*`` of an STCConnectorV35 (timm RegStage names)."""
    sd = {}

    def stage(prefix, first_in):
        for i in range(STC_DEPTH):
            b = f"{prefix}.b{i + 1}"
            cin_b = first_in if i == 0 else hidden
            sd[f"{b}.conv1.conv.weight"] = _rand(gen, hidden, cin_b, 1, 1, std=1 / math.sqrt(cin_b))
            _norm(gen, sd, f"{b}.conv1.bn", hidden)
            sd[f"{b}.conv2.conv.weight"] = _rand(gen, hidden, 1, 3, 3, std=0.3)
            _norm(gen, sd, f"{b}.conv2.bn", hidden)
            se = int(round(cin_b * 0.25))
            sd[f"{b}.se.fc1.weight"] = _rand(gen, se, hidden, 1, 1, std=1 / math.sqrt(hidden))
            sd[f"{b}.se.fc1.bias"] = _rand(gen, se)
            sd[f"{b}.se.fc2.weight"] = _rand(gen, hidden, se, 1, 1, std=1 / math.sqrt(se))
            sd[f"{b}.se.fc2.bias"] = _rand(gen, hidden)
            sd[f"{b}.conv3.conv.weight"] = _rand(gen, hidden, hidden, 1, 1, std=1 / math.sqrt(hidden))
            _norm(gen, sd, f"{b}.conv3.bn", hidden)
            if cin_b != hidden:
                sd[f"{b}.downsample.conv.weight"] = _rand(gen, hidden, cin_b, 1, 1, std=1 / math.sqrt(cin_b))
                _norm(gen, sd, f"{b}.downsample.bn", hidden)

    stage("s1", cin)
    sd["sampler.0.weight"] = _rand(gen, hidden, hidden, 2, 2, 2, std=1 / math.sqrt(8 * hidden))
    sd["sampler.0.bias"] = _rand(gen, hidden)
    stage("s2", hidden)
    for i in (0, 2):
        sd[f"readout.{i}.weight"] = _rand(gen, hidden, hidden, std=1 / math.sqrt(hidden))
        sd[f"readout.{i}.bias"] = _rand(gen, hidden)
    return sd


def beats_tensors(gen) -> dict[str, torch.Tensor]:
    """``model.audio_tower.*``: BEATs with fairseq's names, the shared relative position table
    repeated in every layer (``state_dict`` names a module registered in several places under each;
    safetensors needs separate copies)."""
    c = BEATS
    w, sd = c["width"], {}
    sd["patch_embedding.weight"] = _rand(gen, c["embed"], 1, c["patch"], c["patch"], std=1 / c["patch"])
    _norm(gen, sd, "layer_norm", c["embed"])
    sd["post_extract_proj.weight"] = _rand(gen, w, c["embed"], std=1 / math.sqrt(c["embed"]))
    sd["post_extract_proj.bias"] = _rand(gen, w)
    sd["encoder.pos_conv.0.bias"] = _rand(gen, w)
    sd["encoder.pos_conv.0.weight_g"] = 1 + _rand(gen, 1, 1, c["conv_pos"])
    sd["encoder.pos_conv.0.weight_v"] = _rand(gen, w, w // c["groups"], c["conv_pos"])
    _norm(gen, sd, "encoder.layer_norm", w)
    table = _rand(gen, c["buckets"], c["heads"], std=1.0)
    d = w // c["heads"]
    for i in range(c["layers"]):
        p = f"encoder.layers.{i}"
        for proj in ("q_proj", "k_proj", "v_proj", "out_proj"):
            sd[f"{p}.self_attn.{proj}.weight"] = _rand(gen, w, w, std=1 / math.sqrt(w))
            sd[f"{p}.self_attn.{proj}.bias"] = _rand(gen, w)
        sd[f"{p}.self_attn.grep_linear.weight"] = _rand(gen, 8, d, std=1 / math.sqrt(d))
        sd[f"{p}.self_attn.grep_linear.bias"] = _rand(gen, 8)
        sd[f"{p}.self_attn.grep_a"] = 1 + _rand(gen, 1, c["heads"], 1, 1)
        sd[f"{p}.self_attn.relative_attention_bias.weight"] = table.clone()
        _norm(gen, sd, f"{p}.self_attn_layer_norm", w)
        sd[f"{p}.fc1.weight"] = _rand(gen, c["ffn"], w, std=1 / math.sqrt(w))
        sd[f"{p}.fc1.bias"] = _rand(gen, c["ffn"])
        sd[f"{p}.fc2.weight"] = _rand(gen, w, c["ffn"], std=1 / math.sqrt(c["ffn"]))
        sd[f"{p}.fc2.bias"] = _rand(gen, w)
        _norm(gen, sd, f"{p}.final_layer_norm", w)
    sd["predictor.weight"] = _rand(gen, 527, w)  # AudioSet classifier, unused by VideoLLaMA2
    sd["predictor.bias"] = _rand(gen, 527)
    return sd


def write_siglip(folder: Path, seed: int) -> Path:
    from transformers import SiglipConfig, SiglipModel

    s = SIGLIP
    cfg = SiglipConfig(
        text_config=dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                         vocab_size=64, max_position_embeddings=16),
        vision_config=dict(hidden_size=s["hidden"], num_hidden_layers=s["layers"], num_attention_heads=s["heads"],
                           intermediate_size=s["mlp"], image_size=s["image"], patch_size=s["patch"]),
    )
    torch.manual_seed(seed)
    SiglipModel(cfg).save_pretrained(folder)
    (folder / "preprocessor_config.json").write_text(json.dumps(
        {"image_processor_type": "SiglipImageProcessor", "image_mean": [0.5] * 3, "image_std": [0.5] * 3,
         "size": {"height": s["image"], "width": s["image"]}, "resample": 3, "rescale_factor": 1 / 255}))
    return folder


def write_videollama2_av(root: str | Path, seed: int = 0, positions: int = 512) -> Path:
    """``root/VideoLLaMA2.1-7B-AV`` (+ ``root/siglip-so400m-patch14-384``); returns the model folder.
    ``positions``: the LLM's max_position_embeddings (the released model has 32,768)."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    root = Path(root)
    folder = root / "VideoLLaMA2.1-7B-AV"
    folder.mkdir(parents=True, exist_ok=True)
    write_siglip(root / "siglip-so400m-patch14-384", seed)
    tok = write_qwen2_tokenizer(folder)
    gen = torch.Generator().manual_seed(seed)
    llm_cfg = dict(vocab_size=len(tok), hidden_size=LLM["hidden"], intermediate_size=LLM["inter"],
                   num_hidden_layers=LLM["layers"], num_attention_heads=LLM["heads"],
                   num_key_value_heads=LLM["kv"], max_position_embeddings=positions, rms_norm_eps=1e-6,
                   hidden_act="silu", tie_word_embeddings=False, bos_token_id=None,
                   eos_token_id=tok.eos_token_id)
    torch.manual_seed(seed)
    llm = Qwen2ForCausalLM(Qwen2Config(**llm_cfg, rope_parameters={"rope_type": "default", "rope_theta": 1e6}))
    tensors = {k: v.clone() for k, v in llm.state_dict().items()}
    tensors["model.embed_tokens.weight"] = _rand(gen, len(tok), LLM["hidden"], std=1.0)
    for name in [n for n in tensors if n.endswith(("q_proj.weight", "k_proj.weight"))]:
        tensors[name] = _rand(gen, *tensors[name].shape, std=0.3)  # sharp attention: positions matter
    tensors.update({"model.mm_projector." + k: v for k, v in stc_tensors(gen, SIGLIP["hidden"], LLM["hidden"]).items()})
    tensors.update({"model.audio_tower." + k: v for k, v in beats_tensors(gen).items()})
    for i, (n_in, n_out) in ((0, (BEATS["width"], LLM["hidden"])), (2, (LLM["hidden"], LLM["hidden"]))):
        tensors[f"model.mm_projector_a.{i}.weight"] = _rand(gen, n_out, n_in, std=1 / math.sqrt(n_in))
        tensors[f"model.mm_projector_a.{i}.bias"] = _rand(gen, n_out)
    names = sorted(tensors)
    shards = {"model-00001-of-00002.safetensors": names[::2], "model-00002-of-00002.safetensors": names[1::2]}
    for file, keys in shards.items():
        save_file({k: tensors[k].contiguous() for k in keys}, str(folder / file), metadata={"format": "pt"})
    (folder / "model.safetensors.index.json").write_text(json.dumps(
        {"metadata": {}, "weight_map": {k: f for f, keys in shards.items() for k in keys}}))
    config = {
        "architectures": ["Videollama2Qwen2ForCausalLM"], "model_type": "videollama2_qwen2", **llm_cfg,
        "rope_theta": 1000000.0, "use_sliding_window": False, "torch_dtype": "float32",
        "mm_vision_tower": "google/siglip-so400m-patch14-384", "mm_hidden_size": SIGLIP["hidden"],
        "mm_projector_type": "stc_connector_v35", "mm_vision_select_layer": -2, "mm_vision_select_feature": "patch",
        "mm_audio_tower": "audio_tower.bin", "mm_projector_a_type": "mlp2x_gelu",
        "mm_hidden_size_a": BEATS["width"], "hidden_size_a": LLM["hidden"], "num_frames": 16,
        "image_aspect_ratio": "pad", "use_mm_proj": True,
    }
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    return folder


def load_raw(folder: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    out = {}
    for f in sorted(folder.glob("*.safetensors")):
        out.update(load_file(str(f)))
    return out


# ----------------------------------------------------------------------------- reference forward


def ref_siglip(siglip_folder: Path, frames: torch.Tensor) -> torch.Tensor:
    """[N, 3, 56, 56] in [0, 1] -> hidden_states[-2] of transformers' SiglipVisionModel."""
    from transformers import SiglipVisionModel

    model = SiglipVisionModel.from_pretrained(siglip_folder, local_files_only=True).eval()
    with torch.no_grad():
        return model((frames - 0.5) / 0.5, output_hidden_states=True).hidden_states[-2]


def _ln2d(x, sd, name, act):
    x = F.layer_norm(x.permute(0, 2, 3, 1), (x.shape[1],), sd[name + ".weight"], sd[name + ".bias"], 1e-5)
    x = x.permute(0, 3, 1, 2)
    return F.silu(x) if act else x


def _reg_stage(x, sd, prefix):
    for i in range(STC_DEPTH):
        b = f"{prefix}.b{i + 1}"
        shortcut = x
        y = _ln2d(F.conv2d(x, sd[f"{b}.conv1.conv.weight"]), sd, f"{b}.conv1.bn", True)
        y = _ln2d(F.conv2d(y, sd[f"{b}.conv2.conv.weight"], padding=1, groups=y.shape[1]), sd, f"{b}.conv2.bn", True)
        s = y.mean((2, 3), keepdim=True)
        s = F.conv2d(F.silu(F.conv2d(s, sd[f"{b}.se.fc1.weight"], sd[f"{b}.se.fc1.bias"])),
                     sd[f"{b}.se.fc2.weight"], sd[f"{b}.se.fc2.bias"])
        y = y * torch.sigmoid(s)
        y = _ln2d(F.conv2d(y, sd[f"{b}.conv3.conv.weight"]), sd, f"{b}.conv3.bn", False)
        if f"{b}.downsample.conv.weight" in sd:
            shortcut = _ln2d(F.conv2d(shortcut, sd[f"{b}.downsample.conv.weight"]), sd, f"{b}.downsample.bn", False)
        x = F.silu(y + shortcut)
    return x


def ref_stc(sd: dict, x: torch.Tensor) -> torch.Tensor:
    """VideoLLaMA2 STCConnectorV35.forward: x [b, t, l, d] -> [b, t' h' w', D] (einops steps spelled out)."""
    b, t, l, d = x.shape
    hw = int(l ** 0.5)
    x = x.reshape(b, t, hw, hw, d).permute(0, 4, 1, 2, 3)  # b d t h w
    x = x.permute(0, 2, 1, 3, 4).reshape(b * t, d, hw, hw)  # (b t) d h w
    x = _reg_stage(x, sd, "s1")
    x = x.reshape(b, t, *x.shape[1:]).permute(0, 2, 1, 3, 4)  # b d t h w
    x = F.silu(F.conv3d(x, sd["sampler.0.weight"], sd["sampler.0.bias"], stride=2))
    nt = x.shape[2]
    x = x.permute(0, 2, 1, 3, 4).reshape(b * nt, *x.shape[1:2], *x.shape[3:])
    x = _reg_stage(x, sd, "s2")
    x = x.reshape(b, nt, *x.shape[1:]).permute(0, 1, 3, 4, 2).reshape(b, -1, x.shape[1])  # b (t h w) d
    x = F.gelu(F.linear(x, sd["readout.0.weight"], sd["readout.0.bias"]))
    return F.linear(x, sd["readout.2.weight"], sd["readout.2.bias"])


def _buckets(q_len, k_len, num_buckets, max_distance=800):
    rel = torch.arange(k_len)[None, :] - torch.arange(q_len)[:, None]
    num_buckets //= 2
    out = (rel > 0).long() * num_buckets
    rel = rel.abs()
    max_exact = num_buckets // 2
    large = max_exact + (torch.log(rel.float() / max_exact) / math.log(max_distance / max_exact)
                         * (num_buckets - max_exact)).long()
    large = torch.min(large, torch.full_like(large, num_buckets - 1))
    return out + torch.where(rel < max_exact, rel, large)


def ref_beats(sd: dict, fbank: torch.Tensor) -> torch.Tensor:
    """BEATs.extract_features(fbank, padding_mask=all False, feature_only=True)[0]."""
    c = BEATS
    x = ((fbank - 15.41663) / (2 * 6.55582)).unsqueeze(1)
    x = F.conv2d(x, sd["patch_embedding.weight"], stride=c["patch"])
    x = x.reshape(x.shape[0], x.shape[1], -1).transpose(1, 2)
    x = F.layer_norm(x, (c["embed"],), sd["layer_norm.weight"], sd["layer_norm.bias"])
    x = F.linear(x, sd["post_extract_proj.weight"], sd["post_extract_proj.bias"])
    v = sd["encoder.pos_conv.0.weight_v"]
    w = sd["encoder.pos_conv.0.weight_g"] * v * torch.rsqrt(v.pow(2).sum([0, 1], keepdim=True) + 1e-6)
    conv = F.conv1d(x.transpose(1, 2), w, sd["encoder.pos_conv.0.bias"], padding=c["conv_pos"] // 2,
                    groups=c["groups"])
    conv = F.gelu(conv[:, :, :-1] if c["conv_pos"] % 2 == 0 else conv)
    x = x + conv.transpose(1, 2)
    x = F.layer_norm(x, (c["width"],), sd["encoder.layer_norm.weight"], sd["encoder.layer_norm.bias"])
    x = x.transpose(0, 1)  # T x B x C
    n, bsz, dim = x.shape
    h, hd = c["heads"], dim // c["heads"]
    scaling, alpha32 = hd ** -0.5, 32
    deep_alpha = math.pow(2 * c["layers"], 1 / 4)
    pos_bias = None
    for i in range(c["layers"]):
        p = f"encoder.layers.{i}.self_attn"
        if pos_bias is None:
            values = F.embedding(_buckets(n, n, c["buckets"]), sd[p + ".relative_attention_bias.weight"])
            pos_bias = values.permute(2, 0, 1).unsqueeze(0).repeat(bsz, 1, 1, 1).view(bsz * h, n, n)
        q = F.linear(x, sd[p + ".q_proj.weight"], sd[p + ".q_proj.bias"]) * scaling / alpha32
        k = F.linear(x, sd[p + ".k_proj.weight"], sd[p + ".k_proj.bias"])
        v_ = F.linear(x, sd[p + ".v_proj.weight"], sd[p + ".v_proj.bias"])
        q = q.contiguous().view(n, bsz * h, hd).transpose(0, 1)
        k = k.contiguous().view(-1, bsz * h, hd).transpose(0, 1)
        v_ = v_.contiguous().view(-1, bsz * h, hd).transpose(0, 1)
        attn = torch.bmm(q, k.transpose(1, 2))
        attn = (attn - attn.max(dim=-1, keepdim=True)[0]) * alpha32
        query = q.view(bsz, h, n, hd) * alpha32 / scaling
        gate_a, gate_b = torch.sigmoid(F.linear(query, sd[p + ".grep_linear.weight"], sd[p + ".grep_linear.bias"])
                                       .view(bsz, h, n, 2, 4).sum(-1)).chunk(2, dim=-1)
        gate = gate_a * (gate_b * sd[p + ".grep_a"] - 1.0) + 2.0
        attn = attn + (gate.view(bsz * h, n, 1) * pos_bias).view(attn.shape)
        out = torch.bmm(F.softmax(attn, dim=-1), v_).transpose(0, 1).contiguous().view(n, bsz, dim)
        out = F.linear(out, sd[p + ".out_proj.weight"], sd[p + ".out_proj.bias"])
        lp = f"encoder.layers.{i}"
        x = F.layer_norm(x * deep_alpha + out, (dim,), sd[lp + ".self_attn_layer_norm.weight"],
                         sd[lp + ".self_attn_layer_norm.bias"])
        ff = F.linear(F.gelu(F.linear(x, sd[lp + ".fc1.weight"], sd[lp + ".fc1.bias"])),
                      sd[lp + ".fc2.weight"], sd[lp + ".fc2.bias"])
        x = F.layer_norm(x * deep_alpha + ff, (dim,), sd[lp + ".final_layer_norm.weight"],
                         sd[lp + ".final_layer_norm.bias"])
    return x.transpose(0, 1)


def ref_audio_projector(sd: dict, x: torch.Tensor) -> torch.Tensor:
    x = F.gelu(F.linear(x, sd["model.mm_projector_a.0.weight"], sd["model.mm_projector_a.0.bias"]))
    return F.linear(x, sd["model.mm_projector_a.2.weight"], sd["model.mm_projector_a.2.bias"])


def sub(sd: dict, prefix: str) -> dict:
    return {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}
