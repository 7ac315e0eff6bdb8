"""Each backbone's inputs, pinned to its released preprocessing (docs/BACKBONES.md).

The references are the released steps themselves: VideoLLaMA2's ``expand2square`` and
``frame_sample`` (written out below as its mm_utils.py has them), transformers' own SigLIP and
Qwen2-VL image processors (PIL backends), and its 30-s audio padding.
"""

import numpy as np
import pytest
from PIL import Image

from aurora_rl.data.audio_features import kaldi_fbank, resample
from aurora_rl.data.media_prep import (
    BACKBONE_PREP,
    MediaPrep,
    backbone_prep,
    prepare_frame,
    read_clip_audio,
    video_frame_plan,
)
from aurora_rl.data.refavs_dataset import RefAVSDataset
from tests.data.layout_fixtures import write_pcm16, write_refavs_fixture

VL2 = BACKBONE_PREP["videollama2-av"]


def expand2square(img, background_color):
    """VideoLLaMA2 mm_utils.expand2square (audio_visual branch)."""
    width, height = img.size
    if width == height:
        return img
    if width > height:
        result = Image.new(img.mode, (width, width), background_color)
        result.paste(img, (0, (width - height) // 2))
        return result
    result = Image.new(img.mode, (height, height), background_color)
    result.paste(img, ((height - width) // 2, 0))
    return result


def frame_sample(duration, num_frames):
    """VideoLLaMA2 mm_utils.frame_sample, mode 'uniform'."""
    seg_size = float(duration - 1) / num_frames
    frame_ids = [(seg_size * i + seg_size * (i + 1)) / 2 for i in range(num_frames)]
    return np.round(np.array(frame_ids) + 1e-6).astype(int)


def random_frame(width, height, seed=0):
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


@pytest.mark.parametrize("size", [(96, 54), (40, 72), (64, 64)])
def test_videollama2_frames_equal_its_processor_on_the_padded_square(size):
    from transformers.models.siglip.image_processing_pil_siglip import SiglipImageProcessorPil

    processor = SiglipImageProcessorPil(size={"height": 56, "width": 56}, image_mean=[0.5] * 3, image_std=[0.5] * 3)
    img = random_frame(*size)
    square = expand2square(img, tuple(int(x * 255) for x in processor.image_mean))
    want = processor.preprocess([square], return_tensors="np")["pixel_values"][0]

    pixels, box = prepare_frame(img, 56, VL2)
    np.testing.assert_allclose((pixels - 0.5) / 0.5, want, atol=1e-6)

    top, left, height, width = box
    scale = 56 / max(size)
    assert (height, width) == (round(size[1] * scale), round(size[0] * scale))
    # the padding, away from the picture's edge (where bicubic mixes the two), is the mean colour
    padding = np.ones((56, 56), bool)
    padding[max(top - 3, 0) : top + height + 3, max(left - 3, 0) : left + width + 3] = False
    assert np.allclose(pixels[:, padding], 127 / 255)
    assert padding.any() == (size[0] != size[1])


def test_the_processors_filters_are_the_ones_each_preparation_names():
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil
    from transformers.models.siglip.image_processing_pil_siglip import SiglipImageProcessorPil

    assert SiglipImageProcessorPil().resample == Image.BICUBIC and VL2.frame_filter == "bicubic"
    assert Qwen2VLImageProcessorPil().resample == Image.BICUBIC
    assert BACKBONE_PREP["qwen2.5-omni"].frame_filter == "bicubic"
    img = random_frame(50, 30, seed=1)
    pixels, box = prepare_frame(img, 56, BACKBONE_PREP["qwen2.5-omni"])  # one square, stretched once
    want = np.asarray(img.resize((56, 56), Image.BICUBIC), dtype=np.float32).transpose(2, 0, 1) / 255
    assert np.array_equal(pixels, want) and box == (0, 0, 56, 56)
    tiny, _ = prepare_frame(img, 56, BACKBONE_PREP["tiny"])  # the tiny backbone: as before, bilinear
    assert np.array_equal(tiny, np.asarray(img.resize((56, 56), Image.BILINEAR), dtype=np.float32).transpose(2, 0, 1) / 255)


def test_ten_frames_become_sixteen_as_the_released_code_makes_them():
    assert VL2.video_frames == 16
    assert video_frame_plan(10, VL2) == frame_sample(10, 16).tolist()  # a folder of frames: repeats
    black = backbone_prep("videollama2-av", frame_fill="black")
    assert video_frame_plan(10, black) == list(range(10)) + [-1] * 6  # a list of frames: black appended
    assert video_frame_plan(20, black) == list(range(20))  # a list is never cut to 16
    assert video_frame_plan(10, backbone_prep("videollama2-av", video_frames=10)) == list(range(10))
    assert video_frame_plan(10, BACKBONE_PREP["qwen2.5-omni"]) == list(range(10))


def test_videollama2_audio_is_channel_0_padded_to_30_s_then_resampled(tmp_path):
    rate = 22050
    t = np.arange(10 * rate) / rate
    left, right = 0.5 * np.sin(2 * np.pi * 440 * t), 0.3 * np.sin(2 * np.pi * 3000 * t)
    write_pcm16(tmp_path / "a.wav", np.stack([left, right], 1), rate)
    wav, fbank = read_clip_audio(tmp_path / "a.wav", VL2, 16000, "kaldi_fbank", 128)
    assert wav.shape == (480000,) and fbank.shape == (2998, 128)  # 1,496 BEATs tokens, not 496

    pcm_left = np.round(np.clip(left, -1, 1) * 32767) / 32768  # what the 16-bit file holds
    padded = np.pad(pcm_left, (0, 20 * rate)).astype(np.float32)  # padded at the file's rate, then resampled
    np.testing.assert_allclose(wav, resample(padded, rate, 16000), atol=1e-6)
    np.testing.assert_allclose(fbank, kaldi_fbank(resample(padded, rate, 16000)), atol=1e-4)
    silence = kaldi_fbank(np.zeros(16000, np.float32))[0]
    assert np.allclose(fbank[-500:], silence) and not np.allclose(fbank[:500], silence)

    mean_wav, mean_fbank = read_clip_audio(tmp_path / "a.wav", MediaPrep(), 16000, "kaldi_fbank", 128)
    assert mean_wav.shape == (160000,) and mean_fbank.shape == (998, 128)  # the clip as it is: 10 s


def test_a_ref_avs_clip_read_for_videollama2(tmp_path):
    root = write_refavs_fixture(tmp_path / "refavs")
    for frame in (root / "media").glob("*/frames/*.jpg"):  # the frames become 16:9 (masks stay the frame size)
        Image.open(frame).resize((32, 18)).save(frame)
    for mask in (root / "gt_mask").glob("*/*/*.png"):
        Image.open(mask).resize((32, 18), Image.NEAREST).save(mask)
    clip = RefAVSDataset(root, "train", image_size=64, mask_size=16, prep=VL2)[0]
    assert clip.frames.shape == (10, 3, 64, 64) and clip.masks.shape == (10, 16, 16)
    assert clip.frame_box == (14, 0, 36, 64)  # 18/32 of 64 = 36 rows, centred
    assert np.allclose(clip.frames[:, :, :10], 127 / 255) and np.allclose(clip.frames[:, :, -10:], 127 / 255)
    assert clip.fbank.shape[0] == 2998
