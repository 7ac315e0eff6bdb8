import wave

import numpy as np
import pytest

from aurora_rl.data.audio_features import (
    audio_features,
    kaldi_fbank,
    read_wav,
    resample,
    whisper_log_mel,
    write_wav,
)
from aurora_rl.data.errors import DataError


def tone(freq, seconds=1.0, rate=16000, amp=0.5):
    return (amp * np.sin(2 * np.pi * freq * np.arange(int(seconds * rate)) / rate)).astype(np.float32)


def write_raw(path, frames: bytes, width: int, channels: int, rate: int = 16000):
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(width)
        w.setframerate(rate)
        w.writeframes(frames)


@pytest.mark.parametrize("width", [1, 2, 3, 4])
def test_read_wav_sample_widths(tmp_path, width):
    values = np.array([0.0, 0.5, -0.5, 0.25])
    if width == 1:
        raw = np.round(values * 127 + 128).astype(np.uint8).tobytes()
    elif width == 3:
        ints = np.round(values * (2**23 - 1)).astype(np.int64)
        raw = b"".join(int(v).to_bytes(3, "little", signed=True) for v in ints)
    else:
        dtype = {2: "<i2", 4: "<i4"}[width]
        raw = np.round(values * (2 ** (8 * width - 1) - 1)).astype(dtype).tobytes()
    write_raw(tmp_path / "a.wav", raw, width, 1)
    x, rate = read_wav(tmp_path / "a.wav")
    assert rate == 16000 and x.dtype == np.float32
    assert np.allclose(x, values, atol=1 / 127)


def test_read_wav_averages_channels(tmp_path):
    stereo = np.stack([np.full(10, 16384), np.full(10, -8192)], 1).astype("<i2")
    write_raw(tmp_path / "s.wav", stereo.tobytes(), 2, 2, 8000)
    x, rate = read_wav(tmp_path / "s.wav")
    assert rate == 8000 and x.shape == (10,) and np.allclose(x, (0.5 - 0.25) / 2)


def test_read_wav_errors_name_the_file(tmp_path):
    with pytest.raises(DataError, match="audio file is missing") as e:
        read_wav(tmp_path / "none.wav")
    assert e.value.path == str(tmp_path / "none.wav")
    (tmp_path / "junk.wav").write_bytes(b"RIFF....not a wave file")
    with pytest.raises(DataError, match="not a readable PCM WAV"):
        read_wav(tmp_path / "junk.wav")
    write_wav(tmp_path / "t.wav", tone(440), 16000)
    data = (tmp_path / "t.wav").read_bytes()
    (tmp_path / "t.wav").write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match="truncated"):
        read_wav(tmp_path / "t.wav")


def test_write_then_read_round_trip(tmp_path):
    x = tone(300)
    write_wav(tmp_path / "r.wav", x, 16000)
    y, rate = read_wav(tmp_path / "r.wav")
    assert rate == 16000 and np.abs(x - y).max() < 1 / 32767 + 1e-6


@pytest.mark.parametrize("orig", [8000, 22050, 44100, 48000])
def test_resample_keeps_a_tone_and_the_length(orig):
    x = tone(440, rate=orig)
    y = resample(x, orig, 16000)
    assert y.shape == (int(np.ceil(len(x) * 16000 / orig)),)
    ref = tone(440, rate=16000)
    assert np.abs(y[100:-100] - ref[100:-100]).max() < 2e-3


def test_resample_removes_content_above_the_new_nyquist():
    y = resample(tone(10000, rate=44100), 44100, 16000)  # 10 kHz cannot exist at 16 kHz
    assert np.abs(y[200:-200]).max() < 0.02


def test_kaldi_fbank_matches_transformers_kaldi_reference():
    from transformers.audio_utils import mel_filter_bank, spectrogram, window_function

    rng = np.random.default_rng(0)
    x = (tone(440, 0.7) + 0.05 * rng.standard_normal(11200)).astype(np.float32)
    ours = kaldi_fbank(x, num_mel_bins=80)
    mel = mel_filter_bank(
        num_frequency_bins=257, num_mel_filters=80, min_frequency=20, max_frequency=8000, sampling_rate=16000,
        norm=None, mel_scale="kaldi", triangularize_in_mel_space=True,
    )
    ref = spectrogram(
        x * 32768, window_function(400, "povey", periodic=False), frame_length=400, hop_length=160, fft_length=512,
        power=2.0, center=False, preemphasis=0.97, mel_filters=mel, log_mel="log", mel_floor=1.192092955078125e-07,
        remove_dc_offset=True,
    ).T
    assert ours.shape == ref.shape == (68, 80)
    assert np.abs(ours - ref).max() < 1e-3


def test_kaldi_fbank_shape_tone_peak_and_silence_floor():
    f = kaldi_fbank(tone(1000), num_mel_bins=128)
    assert f.shape == (1 + (16000 - 400) // 160, 128) and f.dtype == np.float32
    # the peak bin is the one whose centre (on the Kaldi mel scale) is nearest 1 kHz
    mel = lambda hz: 1127 * np.log1p(hz / 700)  # noqa: E731
    centres = mel(20) + (np.arange(128) + 1) * (mel(8000) - mel(20)) / 129
    assert abs(int(f.mean(0).argmax()) - int(np.abs(centres - mel(1000)).argmin())) <= 1
    silent = kaldi_fbank(np.zeros(4000, dtype=np.float32), num_mel_bins=16)
    assert np.allclose(silent, np.log(np.finfo(np.float32).eps))
    assert kaldi_fbank(np.zeros(399, dtype=np.float32)).shape == (0, 128)


def test_whisper_log_mel_matches_transformers_feature_extractor():
    from transformers import WhisperFeatureExtractor

    rng = np.random.default_rng(1)
    x = (tone(700, 0.9) + 0.02 * rng.standard_normal(14400)).astype(np.float32)
    ref = WhisperFeatureExtractor(feature_size=128)(x, sampling_rate=16000, padding="longest", return_tensors="np")
    ref = ref["input_features"][0].T
    ours = whisper_log_mel(x, num_mel_bins=128)
    assert ours.shape == ref.shape == (90, 128)
    assert np.abs(ours - ref).max() < 1e-4


def test_audio_features_dispatch():
    x = tone(500, 0.5)
    assert audio_features(x, "kaldi_fbank", 16000, 32).shape == (48, 32)
    assert audio_features(x, "whisper_log_mel", 16000, 80).shape == (50, 80)
    with pytest.raises(ValueError, match="unknown audio feature kind"):
        audio_features(x, "mfcc", 16000, 13)
