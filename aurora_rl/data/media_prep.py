"""How each backbone's released code turns a clip into its inputs, and the same steps here.

A backbone was trained on inputs made one way; fine-tuning it on inputs made another way (other
frame geometry, other resampling filter, other audio length) starts it off its own distribution.
``MediaPrep`` names those choices; ``BACKBONE_PREP`` holds each backbone's, read off its released
preprocessing (docs/BACKBONES.md, "Inputs as the backbone expects them"):

- frames: ``stretch`` resizes the frame to the square as it is; ``pad`` first pastes it centred
  on a square of the processor's mean colour (VideoLLaMA2's ``expand2square``), so nothing is
  distorted. Either way the frame is resized once, with the processor's filter, from the file's
  pixels (uint8, PIL) straight to the model's size.
- audio: the channel kept (VideoLLaMA2 reads the first one; librosa-style loaders average them)
  and the length the waveform is zero-padded or cut to before its features (VideoLLaMA2-AV: 30 s,
  at the file's rate, before resampling).
- video frames: the number the vision encoder takes, and what fills the gap when a clip has
  fewer (``black``: black frames appended, as VideoLLaMA2's ``process_video`` does for a list of
  frames; ``repeat``: frames repeated by its uniform ``frame_sample``, as for a folder of frames).

The frame geometry is kept as a box: where the picture lies inside the square (SAM segments that
region, so predicted masks line up with the ground truth, which is the whole frame).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal, Optional

import numpy as np
from PIL import Image

FILTERS = {"bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC}


@dataclass(frozen=True)
class MediaPrep:
    """
    Attributes:
        frame_fit: ``stretch`` or ``pad`` (centred on a square of ``pad_rgb``).
        frame_filter: the resize filter (``bilinear``, ``bicubic``).
        pad_rgb: the padding colour, 0-255 (VideoLLaMA2: ``int(mean * 255)`` per channel).
        audio_channel: ``mean`` of all channels or the ``first`` one.
        audio_seconds: zero-pad or cut the waveform to this length before its features (None: as is).
        video_frames: frames the vision encoder takes (None: the clip's).
        frame_fill: ``black`` or ``repeat``, when the clip has fewer than ``video_frames``.
    """

    frame_fit: Literal["stretch", "pad"] = "stretch"
    frame_filter: Literal["bilinear", "bicubic"] = "bilinear"
    pad_rgb: tuple[int, int, int] = (127, 127, 127)
    audio_channel: Literal["mean", "first"] = "mean"
    audio_seconds: Optional[float] = None
    video_frames: Optional[int] = None
    frame_fill: Literal["black", "repeat"] = "black"

    @classmethod
    def from_dict(cls, raw: dict) -> "MediaPrep":
        return cls(**{**raw, "pad_rgb": tuple(raw.get("pad_rgb", (127, 127, 127)))})


BACKBONE_PREP = {
    # Ours: the synthetic benchmark's frames are square already.
    "tiny": MediaPrep(),
    # VideoLLaMA2 (audio_visual branch, videollama2/mm_utils.py): process_video pads to a square
    # with the SigLIP processor's mean (0.5 -> 127) and the processor resizes bicubic to 384;
    # process_audio_file keeps channel 0, pads/cuts to 30 s, then resamples to 16 kHz. The
    # VideoLLaMA2.1 models were trained on 16 frames sampled uniformly from a video; Ref-AVS has
    # 10 per clip, so they are repeated by the same uniform sampling (``black`` is what a list of
    # frames gets at inference).
    "videollama2-av": MediaPrep(frame_fit="pad", frame_filter="bicubic", pad_rgb=(127, 127, 127),
                                audio_channel="first", audio_seconds=30.0, video_frames=16, frame_fill="repeat"),
    # Qwen2.5-Omni (its processor): bicubic resize, audio loaded mono (channels averaged), the
    # audio tower sees the clip's own frames (the feature extractor's 30-s padding is masked out).
    # The processor keeps the aspect ratio (smart_resize to multiples of 28); here frames are
    # stretched to one square size, which keeps every clip's token count equal.
    "qwen2.5-omni": MediaPrep(frame_fit="stretch", frame_filter="bicubic"),
}


def backbone_prep(backbone: str, video_frames: Optional[int] = None, frame_fill: Optional[str] = None) -> MediaPrep:
    """The backbone's preparation, with the config's frame count and fill where set."""
    changes = {k: v for k, v in (("video_frames", video_frames), ("frame_fill", frame_fill)) if v is not None}
    return replace(BACKBONE_PREP[backbone], **changes)


def prepare_frame(img: Image.Image, size: int, prep: MediaPrep) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """RGB frame -> (float32 [3, size, size] in [0, 1], box) where box = (top, left, height, width)
    of the picture inside the square, in output pixels."""
    img = img.convert("RGB")
    box = (0, 0, size, size)
    if prep.frame_fit == "pad" and img.width != img.height:
        width, height = img.size
        side = max(width, height)
        left, top = (side - width) // 2, (side - height) // 2
        square = Image.new("RGB", (side, side), tuple(prep.pad_rgb))
        square.paste(img, (left, top))
        img, scale = square, size / side
        box = (round(top * scale), round(left * scale), max(1, round(height * scale)), max(1, round(width * scale)))
    if img.size != (size, size):
        img = img.resize((size, size), FILTERS[prep.frame_filter])
    return (np.asarray(img, dtype=np.float32) / 255.0).transpose(2, 0, 1), box


def prepare_waveform(waveform: np.ndarray, rate: int, prep: MediaPrep) -> np.ndarray:
    """Zero-pad or cut a mono waveform [N] at ``rate`` to ``prep.audio_seconds`` (the first
    seconds are kept; VideoLLaMA2 cuts at a random start, which a 10-s clip never reaches)."""
    if prep.audio_seconds is None:
        return waveform
    n = int(round(prep.audio_seconds * rate))
    if waveform.shape[0] >= n:
        return waveform[:n]
    return np.pad(waveform, (0, n - waveform.shape[0]))


def video_frame_plan(clip_frames: int, prep: MediaPrep) -> list[int]:
    """Which of the clip's frames the vision encoder sees, in order; -1 is a black frame.

    ``repeat`` is VideoLLaMA2's uniform ``frame_sample``: the middle of each of ``video_frames``
    equal segments of [0, clip_frames - 1], rounded. ``black`` keeps every frame and appends black
    ones up to ``video_frames`` (a longer clip is kept whole, as its list input is).
    """
    wanted = prep.video_frames
    if wanted is None or wanted == clip_frames:
        return list(range(clip_frames))
    if prep.frame_fill == "black":
        return list(range(clip_frames)) + [-1] * max(0, wanted - clip_frames)
    seg = (clip_frames - 1) / wanted
    return [int(np.round(seg * (i + 0.5) + 1e-6)) for i in range(wanted)]


def read_clip_audio(path, prep: MediaPrep, sample_rate: int, features: str, bins: int) -> tuple[np.ndarray, np.ndarray]:
    """A clip's WAV -> (waveform [N] at ``sample_rate``, features [frames, bins]) as ``prep`` says:
    channel chosen, padded or cut at the file's rate, then resampled (the released order)."""
    from aurora_rl.data.audio_features import audio_features, read_wav, resample

    wav, rate = read_wav(path, prep.audio_channel)
    wav = resample(prepare_waveform(wav, rate, prep), rate, sample_rate)
    return wav, audio_features(wav, features, sample_rate, bins)
