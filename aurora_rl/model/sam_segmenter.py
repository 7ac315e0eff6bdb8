"""SAM as the policy's mask head: a frozen image encoder with a per-clip cache, a trainable mask decoder.

LISA-style prompting: the [SEG] embedding (after ``SegProjector``) is the only sparse prompt token
of SAM's mask decoder, with the "no mask" dense embedding; one prompt segments every frame of a
clip. Built on transformers' ``SamModel`` (see ``sam_checkpoint.load_sam``); no torchvision.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn
from transformers import SamModel

if TYPE_CHECKING:
    from aurora_rl.config.schema import SamConfig

# segment-anything's normalisation, on the 0-255 scale.
PIXEL_MEAN = (123.675, 116.28, 103.53)
PIXEL_STD = (58.395, 57.12, 57.375)
# The logit of every pixel when a completion has no [SEG]: sigmoid is exactly 0 in fp32 and bf16.
NO_PROMPT_LOGIT = -1.0e4


def resized_shape(height: int, width: int, long_side: int) -> tuple[int, int]:
    """(h, w) once the longer side is scaled to ``long_side``, rounded as segment-anything does."""
    scale = long_side / max(height, width)
    return int(height * scale + 0.5), int(width * scale + 0.5)


class SamSegmenter(nn.Module):
    """``encode`` frames once per clip, ``decode`` any number of [SEG] prompts against them.

    Args:
        sam: a ``SamModel`` whose vision config ``image_size`` is the input size to run at.
        cache_size: how many clips' embeddings to keep (least recently used are dropped).
        freeze_image_encoder: AURORA freezes it; unfrozen, embeddings are recomputed with gradients
            on every call and never cached, since each optimiser step would make them stale.
        train_mask_decoder: whether the mask decoder's weights get gradients.
    """

    def __init__(self, sam: SamModel, cache_size: int = 64, freeze_image_encoder: bool = True,
                 train_mask_decoder: bool = True):
        super().__init__()
        self.sam = sam
        self.input_size = sam.config.vision_config.image_size
        self.cache_size = cache_size
        self.freeze_image_encoder = freeze_image_encoder
        self._cache: OrderedDict[Hashable, torch.Tensor] = OrderedDict()
        sam.requires_grad_(False)
        sam.vision_encoder.requires_grad_(not freeze_image_encoder)
        sam.mask_decoder.requires_grad_(train_mask_decoder)
        self.train(sam.training)

    @classmethod
    def from_config(cls, sam: SamModel, cfg: "SamConfig") -> "SamSegmenter":
        """The segmenter ``model.sam`` describes, around an already built or loaded ``sam``."""
        return cls(sam, cache_size=cfg.cache_clips, freeze_image_encoder=cfg.freeze_image_encoder,
                   train_mask_decoder=cfg.train_mask_decoder)

    @property
    def prompt_dim(self) -> int:
        """Width of one sparse prompt token (256 for every released SAM)."""
        return self.sam.config.prompt_encoder_config.hidden_size

    def train(self, mode: bool = True) -> "SamSegmenter":
        super().train(mode)
        if self.freeze_image_encoder:  # frozen parts stay deterministic whatever mode the policy is in
            self.sam.vision_encoder.eval()
        self.sam.prompt_encoder.eval()
        return self

    def clear_cache(self) -> None:
        self._cache.clear()

    def _apply(self, fn, *args, **kwargs):
        self._cache.clear()  # cached embeddings would stay on the old device or dtype
        return super()._apply(fn, *args, **kwargs)

    def preprocess(self, frames: torch.Tensor) -> torch.Tensor:
        """Resize the longer side to the input size, normalise, pad bottom/right to a square.

        Args:
            frames: [T, 3, H, W] RGB floats in [0, 1].
        Returns:
            [T, 3, S, S] pixel values, S = ``input_size``, in the image encoder's dtype and device.
        """
        weight = self.sam.vision_encoder.patch_embed.projection.weight
        frames = frames.to(device=weight.device, dtype=torch.float32)
        height, width = resized_shape(frames.shape[-2], frames.shape[-1], self.input_size)
        if (height, width) != tuple(frames.shape[-2:]):
            frames = F.interpolate(frames, size=(height, width), mode="bilinear", align_corners=False, antialias=True)
        # Constants rather than buffers: a bf16 model would round buffers, the pixels are normalised in fp32.
        mean = torch.tensor(PIXEL_MEAN, device=frames.device).view(1, 3, 1, 1) / 255
        std = torch.tensor(PIXEL_STD, device=frames.device).view(1, 3, 1, 1) / 255
        pixels = (frames - mean) / std
        pixels = F.pad(pixels, (0, self.input_size - width, 0, self.input_size - height))
        return pixels.to(weight.dtype)

    def encode(self, frames: torch.Tensor, cache_key: Hashable | None = None) -> torch.Tensor:
        """Image embeddings of a clip's frames, computed once per ``cache_key`` while the encoder is frozen.

        Args:
            frames: [T, 3, H, W] RGB floats in [0, 1], all frames of one clip.
            cache_key: the clip's id; None computes without caching.
        Returns:
            [T, C, h, w] image embeddings (C = ``prompt_dim``, h = w = input_size / patch size).
        """
        if not self.freeze_image_encoder:
            return self.sam.vision_encoder(self.preprocess(frames)).last_hidden_state
        if cache_key is not None and cache_key in self._cache:
            self._cache.move_to_end(cache_key)
            return self._cache[cache_key]
        with torch.no_grad():
            embeddings = self.sam.vision_encoder(self.preprocess(frames)).last_hidden_state
        if cache_key is not None and self.cache_size > 0:
            self._cache[cache_key] = embeddings
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return embeddings

    def decode(self, image_embeddings: torch.Tensor, sparse_prompt: torch.Tensor | None,
               out_size: tuple[int, int], frame_size: tuple[int, int] | None = None) -> torch.Tensor:
        """Mask logits of every frame for one [SEG] prompt; None (no [SEG]) gives an empty mask.

        Args:
            image_embeddings: [T, C, h, w] from ``encode``.
            sparse_prompt: [N, D] or [1, N, D] prompt tokens (N = 1 for one [SEG], D = ``prompt_dim``), or None.
            out_size: (H, W) of the masks wanted; the padding added by ``preprocess`` is cropped.
            frame_size: (H, W) of the frames ``encode`` took (None: ``out_size``): their aspect
                ratio decides the padding.
        Returns:
            [T, H, W] float32 logits, differentiable w.r.t. the prompt and the mask decoder.
        """
        if sparse_prompt is None:
            return torch.full((image_embeddings.shape[0], *out_size), NO_PROMPT_LOGIT, device=image_embeddings.device)
        if sparse_prompt.dim() == 2:
            sparse_prompt = sparse_prompt[None]
        if sparse_prompt.shape[0] != 1:
            raise ValueError(f"decode takes one prompt, got {sparse_prompt.shape[0]}: use decode_prompts")
        return self.decode_prompts(image_embeddings, sparse_prompt, out_size, frame_size)[0]

    def decode_prompts(self, image_embeddings: torch.Tensor, sparse_prompts: torch.Tensor,
                       out_size: tuple[int, int], frame_size: tuple[int, int] | None = None) -> torch.Tensor:
        """Mask logits for P prompts against the same clip in one decoder pass (e.g. G sampled paths).

        Args:
            image_embeddings: [T, C, h, w] from ``encode``.
            sparse_prompts: [P, N, D] prompt tokens; prompt p segments all T frames.
            out_size: (H, W) of the masks wanted. frame_size: as in ``decode``.
        Returns:
            [P, T, H, W] float32 logits.
        """
        num_frames = image_embeddings.shape[0]
        num_prompts, num_tokens, dim = sparse_prompts.shape
        if dim != self.prompt_dim:
            raise ValueError(f"prompt width {dim} != SAM prompt_dim {self.prompt_dim} (size SegProjector to it)")
        decoder = self.sam.mask_decoder
        dtype = decoder.iou_token.weight.dtype
        image_pe = self.sam.get_image_wide_positional_embeddings().to(dtype)
        _, dense = self.sam.prompt_encoder(input_points=None, input_labels=None, input_boxes=None, input_masks=None)
        # The decoder's point-batch axis carries the prompts: it attends each prompt to each frame separately.
        low_res, _ = decoder(
            image_embeddings=image_embeddings.to(dtype),
            image_positional_embeddings=image_pe.expand(num_frames, -1, -1, -1),
            sparse_prompt_embeddings=sparse_prompts.to(dtype)[None].expand(num_frames, -1, -1, -1),
            dense_prompt_embeddings=dense.to(dtype),
            multimask_output=False,
        )
        return self.postprocess(low_res[:, :, 0].transpose(0, 1), out_size, frame_size)

    def postprocess(self, low_res: torch.Tensor, out_size: tuple[int, int],
                    frame_size: tuple[int, int] | None = None) -> torch.Tensor:
        """Upsample decoder logits to the padded input, crop the padding, resize to ``out_size``.

        Args:
            low_res: [..., 4h, 4w] mask logits from the decoder.
            out_size: (H, W) of the masks wanted. frame_size: (H, W) of the encoded frames
                (None: ``out_size``).
        Returns:
            [..., H, W] float32 logits.
        """
        lead = low_res.shape[:-2]
        logits = low_res.reshape(-1, 1, *low_res.shape[-2:]).float()
        logits = F.interpolate(logits, size=(self.input_size, self.input_size), mode="bilinear", align_corners=False)
        height, width = resized_shape(*(frame_size or out_size), self.input_size)
        logits = F.interpolate(logits[..., :height, :width], size=tuple(out_size), mode="bilinear", align_corners=False)
        return logits.reshape(*lead, *out_size)
