"""One clip from files -> the policy's reasoning, masks and an overlay (``aurora-rl infer``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from aurora_rl.data.errors import DataError
from aurora_rl.data.media_io import evenly_spaced, open_image
from aurora_rl.data.media_prep import MediaPrep, prepare_frame, read_clip_audio
from aurora_rl.prompts.answer_format import build_prompt, parse_answer

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp"}


@dataclass
class InferResult:
    answer: str
    target_class: str | None
    mask_dir: Path
    overlay: Path


def read_frames(folder: str | Path, num_frames: int, size: int, prep: MediaPrep = MediaPrep()
                ) -> tuple[np.ndarray, np.ndarray, tuple[int, int, int, int]]:
    """Frames of a folder in numeric order -> (model input [T,3,size,size], originals [T,3,H,W],
    the picture's box inside the model's squares). ``num_frames`` evenly spaced ones when the
    folder has more; fewer is refused (the model takes exactly ``num_frames``)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(folder, "frames folder does not exist")
    files = sorted((p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES),
                   key=lambda p: (int(p.stem) if p.stem.isascii() and p.stem.isdigit() else 10**9, p.name))
    if len(files) < num_frames:
        raise DataError(folder, f"{len(files)} image files, the checkpoint takes {num_frames} frames "
                                f"({', '.join(sorted(IMAGE_SUFFIXES))})")
    chosen = [files[i] for i in evenly_spaced(len(files), num_frames)]
    images = [open_image(p) for p in chosen]
    prepared = [prepare_frame(im, size, prep) for im in images]
    model_in = np.stack([pixels for pixels, _ in prepared])
    w, h = images[0].size
    originals = np.stack([np.asarray(im.convert("RGB").resize((w, h)), dtype=np.float32).transpose(2, 0, 1) / 255.0
                          for im in images])
    return model_in, originals, prepared[0][1]


def infer_clip(ckpt: str, frames_dir: str, wav: str, expression: str, out: str, *, max_new_tokens: int = 150,
               greedy: bool = True, temperature: float = 1.0, top_p: float = 0.9, seed: int = 0) -> InferResult:
    from PIL import Image

    from aurora_rl.model.build import MediaShape
    from aurora_rl.model.checkpoint import load_policy, read_manifest
    from aurora_rl.model.generation import answer_clip
    from aurora_rl.viz.overlay import overlay_grid

    shape = MediaShape(**read_manifest(ckpt)["media"])  # the clip is checked before the model loads
    frames, originals, box = read_frames(frames_dir, shape.num_frames, shape.image_size, shape.prep)
    _, fbank = read_clip_audio(wav, shape.prep, shape.sample_rate, shape.audio_features, shape.fbank_bins)
    policy, tokenizer, _, shape = load_policy(ckpt)
    prompt_ids = tokenizer(build_prompt(expression), add_special_tokens=False).input_ids
    completion = answer_clip(policy, tokenizer, prompt_ids, torch.from_numpy(frames), torch.from_numpy(fbank),
                             max_new_tokens=max_new_tokens, greedy=greedy, temperature=temperature, top_p=top_p,
                             seed=seed, frame_box=box)
    h, w = originals.shape[2:]
    logits = torch.nn.functional.interpolate(completion.mask_logits[:, None].float(), size=(h, w), mode="bilinear",
                                             align_corners=False)[:, 0]
    masks = (logits.sigmoid() > 0.5).cpu().numpy()
    out_dir = Path(out)
    mask_dir = out_dir / "masks"
    mask_dir.mkdir(parents=True, exist_ok=True)
    for i, m in enumerate(masks):
        Image.fromarray((m * 255).astype(np.uint8)).save(mask_dir / f"{i:05d}.png")
    parsed = parse_answer(completion.text)
    (out_dir / "answer.txt").write_text(completion.text + "\n")
    caption = f"expression: {expression}\nanswer: {completion.text}"
    if parsed.problems:
        caption += f"\nmalformed: {'; '.join(parsed.problems)}"
    overlay = overlay_grid(originals, masks, caption, out_dir / "overlay.png",
                           title=f"target: {parsed.target_class or '?'}")
    return InferResult(completion.text, parsed.target_class, mask_dir, overlay)
