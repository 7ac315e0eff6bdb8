"""Frames and masks from image files, resized to the model's sizes; errors name the file."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from aurora_rl.data.errors import DataError


def open_image(path: str | Path) -> Image.Image:
    """Open and fully decode an image (a truncated or corrupt file fails here, not later).

    An image of more than ``Image.MAX_IMAGE_PIXELS`` pixels is refused from its header: a file of a
    few hundred bytes can declare 20000 x 20000 and take gigabytes to decode. (PIL only warns below
    twice that bound; the warning is made an error here.)
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(path)
            img.load()
        return img
    except FileNotFoundError:
        raise DataError(path, "image file is missing") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise DataError(path, f"image too large to decode ({e})") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise DataError(path, f"cannot decode image ({e})") from None


def mask_to_array(img: Image.Image, size: int) -> np.ndarray:
    """Mask image -> uint8 [size, size] in {0, 1}.

    Any mode is first converted to greyscale and binarised with > 0, as the official Ref-AVS
    loader does (cv2 greyscale > 0); the binary mask is then resized with nearest neighbour.
    """
    binary = (np.asarray(img.convert("L")) > 0).astype(np.uint8)
    if binary.shape != (size, size):
        binary = np.asarray(Image.fromarray(binary).resize((size, size), Image.NEAREST))
    return binary


def mask_size_mismatch(mask_size: tuple[int, int], frame_path, frame_size: tuple[int, int]) -> str:
    """The message for a mask whose (width, height) differs from its frame's."""
    return f"mask is {mask_size[0]}x{mask_size[1]} but its frame {frame_path} is {frame_size[0]}x{frame_size[1]}"


def evenly_spaced(available: int, wanted: int) -> list[int]:
    """``wanted`` frame indices spread evenly over ``available`` frames (all of them when equal)."""
    if wanted >= available:
        return list(range(available))
    return [int(round(i)) for i in np.linspace(0, available - 1, wanted)]
