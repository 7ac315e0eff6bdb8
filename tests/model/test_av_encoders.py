import torch

from aurora_rl.model.av_encoders import TinyAudioEncoder, TinyVisionEncoder, standardize_fbank


def test_standardize_fbank_uses_only_valid_frames_and_keeps_padding_zero():
    fbank = torch.zeros(2, 6, 4)
    fbank[0, :4] = torch.arange(16.0).view(4, 4) + 10.0
    fbank[1] = torch.arange(24.0).view(6, 4)
    out = standardize_fbank(fbank, torch.tensor([4, 6]))
    valid = out[0, :4]
    torch.testing.assert_close(valid.mean(), torch.tensor(0.0), atol=1e-5, rtol=0)
    torch.testing.assert_close(valid.pow(2).mean(), torch.tensor(1.0), atol=1e-3, rtol=0)
    assert out[0, 4:].abs().max() == 0
    torch.testing.assert_close(out[0, :4], out[1, :4] * 0 + standardize_fbank(fbank[:1, :4])[0])


def test_audio_tokens_do_not_depend_on_padding_or_loudness_offset():
    torch.manual_seed(0)
    enc = TinyAudioEncoder(hidden=32, bins=8, width=16, num_tokens=5, out_scale=0.02, standardize=True)
    clip = torch.randn(1, 20, 8) * 4 + 14
    padded = torch.cat([clip, torch.zeros(1, 7, 8)], dim=1)
    with torch.no_grad():
        a = enc(clip, torch.tensor([20]))
        b = enc(padded, torch.tensor([20]))
        c = enc(clip + 5.0, torch.tensor([20]))
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(a, c, atol=1e-4, rtol=1e-4)


def test_media_tokens_start_at_the_token_embedding_scale():
    torch.manual_seed(0)
    vision = TinyVisionEncoder(hidden=32, width=16, grid=3, chunks=2, out_scale=0.02)
    audio = TinyAudioEncoder(hidden=32, bins=8, width=16, num_tokens=5, out_scale=0.02, standardize=True)
    with torch.no_grad():
        v = vision(torch.rand(2, 4, 3, 64, 64))
        a = audio(torch.randn(2, 30, 8) * 4 + 14)
    assert v.shape == (2, 2 * 3 * 3, 32) and a.shape == (2, 5, 32)
    for tokens in (v, a):
        assert 0.015 < tokens.std().item() < 0.025


def test_both_vision_stems_reduce_by_eight_and_keep_a_pixel_change_local():
    import pytest

    from aurora_rl.model.av_encoders import vision_stem

    torch.manual_seed(0)
    frames = torch.zeros(1, 3, 64, 64)
    dot = frames.clone()
    dot[0, :, 30, 30] = 1.0  # one pixel, inside a single 4x4 patch
    for kind in ("patch", "conv"):
        stem = vision_stem(kind, 16)
        with torch.no_grad():
            base, moved = stem(frames), stem(dot)
        assert base.shape == (1, 16, 8, 8)
        changed = (moved - base).abs().amax(dim=1)[0] > 1e-6
        assert changed.any() and changed.sum() <= 16  # within a 4x4 block of the 8x8 map
    with pytest.raises(ValueError, match="unknown vision stem 'vit'"):
        vision_stem("vit", 16)
