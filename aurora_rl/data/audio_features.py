"""Audio in: WAV reading (stdlib ``wave``), resampling, and the features each backbone expects.

- ``kaldi_fbank``: Kaldi-compatible log mel filterbank, the input of BEATs (VideoLLaMA2-AV's
  audio encoder) and of the tiny backbone. Same defaults as ``torchaudio.compliance.kaldi.fbank``
  (25 ms Povey window, 10 ms shift, no dither, DC removal, pre-emphasis 0.97, 512-point FFT,
  power spectrum, triangular filters on the Kaldi mel scale 1127 ln(1 + f/700) from 20 Hz to
  Nyquist, natural log floored at float32 eps, snip_edges). BEATs feeds it the waveform scaled by
  2^15 (``scale`` below) and normalises afterwards with its own mean/std; that normalisation
  belongs to the encoder, not here.
- ``whisper_log_mel``: Whisper's log10 mel spectrogram (Hann 400, hop 160, centred with reflect
  padding, Slaney mel filters 0-8 kHz, clamp to max - 8, (x + 4) / 4), the input of the
  Qwen2.5-Omni audio tower. It is computed over the clip as given (no padding to 30 s).

Shapes: a waveform is float32 [N] in [-1, 1]; features are float32 [frames, bins].
"""

from __future__ import annotations

import math
import wave
from pathlib import Path

import numpy as np
import torch

from aurora_rl.data.errors import DataError

FEATURE_KINDS = ("kaldi_fbank", "whisper_log_mel")


def read_wav(path: str | Path, channel: str = "mean") -> tuple[np.ndarray, int]:
    """Read a PCM WAV file (8/16/24/32-bit, any channel count) -> (float32 [N] mono in [-1, 1], rate).

    ``channel``: ``mean`` averages the channels, ``first`` keeps channel 0 (as VideoLLaMA2 reads
    audio). Raises DataError naming the file when it is missing or not PCM WAV.
    """
    try:
        with wave.open(str(path), "rb") as w:
            channels, width, rate, n = w.getnchannels(), w.getsampwidth(), w.getframerate(), w.getnframes()
            raw = w.readframes(n)
    except FileNotFoundError:
        raise DataError(path, "audio file is missing") from None
    except (wave.Error, EOFError, OSError) as e:
        raise DataError(path, f"not a readable PCM WAV file ({e})") from None
    if len(raw) != n * channels * width:
        raise DataError(path, f"WAV data is truncated ({len(raw)} of {n * channels * width} bytes)")
    if width == 1:
        x = (np.frombuffer(raw, dtype=np.uint8).astype(np.float32) - 128.0) / 128.0
    elif width == 2:
        x = np.frombuffer(raw, dtype="<i2").astype(np.float32) / 32768.0
    elif width == 3:
        b = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 3).astype(np.int32)
        v = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
        x = (np.where(v >= 1 << 23, v - (1 << 24), v)).astype(np.float32) / float(1 << 23)
    elif width == 4:
        x = (np.frombuffer(raw, dtype="<i4").astype(np.float64) / 2147483648.0).astype(np.float32)
    else:
        raise DataError(path, f"unsupported sample width {width} bytes")
    x = x.reshape(-1, channels)
    return (x[:, 0] if channel == "first" else x.mean(axis=1)).astype(np.float32), rate


def write_wav(path: str | Path, waveform: np.ndarray, sample_rate: int) -> None:
    """Write float [N] in [-1, 1] as 16-bit mono PCM (values outside are clipped)."""
    pcm = np.round(np.clip(waveform, -1.0, 1.0) * 32767.0).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sample_rate)
        w.writeframes(pcm.tobytes())


def resample(
    waveform: np.ndarray, orig_rate: int, new_rate: int, lowpass_width: int = 6, rolloff: float = 0.99
) -> np.ndarray:
    """Band-limited resampling with a Hann-windowed sinc (the method torchaudio uses by default).

    Args:
        waveform: float32 [N].
    Returns:
        float32 [ceil(N * new_rate / orig_rate)].
    """
    if orig_rate == new_rate:
        return waveform.astype(np.float32, copy=False)
    g = math.gcd(orig_rate, new_rate)
    orig, new = orig_rate // g, new_rate // g
    base = min(orig, new) * rolloff
    width = math.ceil(lowpass_width * orig / base)
    idx = torch.arange(-width, width + orig, dtype=torch.float64) / orig
    t = (torch.arange(0, -new, -1, dtype=torch.float64)[:, None] / new + idx[None, :]) * base
    t = t.clamp(-lowpass_width, lowpass_width)
    window = torch.cos(t * math.pi / lowpass_width / 2) ** 2
    t = t * math.pi
    kernel = torch.where(t == 0, torch.ones_like(t), torch.sin(t) / t) * window * (base / orig)
    x = torch.from_numpy(np.asarray(waveform, dtype=np.float64))
    n = x.shape[0]
    x = torch.nn.functional.pad(x[None, None], (width, width + orig))
    y = torch.nn.functional.conv1d(x, kernel[:, None, :], stride=orig)  # [1, new, L]
    y = y[0].t().reshape(-1)[: math.ceil(new * n / orig)]
    return y.to(torch.float32).numpy()


def _kaldi_mel_banks(num_bins: int, n_fft: int, sample_rate: int, low_freq: float, high_freq: float) -> torch.Tensor:
    """Triangular filters, linear in Kaldi mel, over the first n_fft/2 FFT bins -> [num_bins, n_fft/2 + 1]."""

    def mel(f):
        return 1127.0 * torch.log1p(torch.as_tensor(f, dtype=torch.float64) / 700.0)

    mel_low, mel_high = mel(low_freq), mel(high_freq)
    delta = (mel_high - mel_low) / (num_bins + 1)
    b = torch.arange(num_bins, dtype=torch.float64)[:, None]
    left, center, right = mel_low + b * delta, mel_low + (b + 1) * delta, mel_low + (b + 2) * delta
    m = mel(sample_rate / n_fft * torch.arange(n_fft // 2, dtype=torch.float64))[None, :]
    banks = torch.clamp(torch.minimum((m - left) / (center - left), (right - m) / (right - center)), min=0.0)
    return torch.nn.functional.pad(banks, (0, 1))  # Kaldi gives the Nyquist bin no weight


def kaldi_fbank(
    waveform: np.ndarray,
    sample_rate: int = 16000,
    num_mel_bins: int = 128,
    frame_length_ms: float = 25.0,
    frame_shift_ms: float = 10.0,
    low_freq: float = 20.0,
    preemphasis: float = 0.97,
    scale: float = 32768.0,
) -> np.ndarray:
    """Kaldi log mel filterbank (torchaudio.compliance.kaldi.fbank defaults, see module doc).

    Args:
        waveform: float32 [N] in [-1, 1]; multiplied by ``scale`` first (2^15 = 16-bit PCM units,
            as BEATs and Kaldi expect).
    Returns:
        float32 [1 + (N - win) // hop, num_mel_bins] (zero rows when N < win), natural log.
    """
    win = int(sample_rate * frame_length_ms / 1000)
    hop = int(sample_rate * frame_shift_ms / 1000)
    n_fft = 1 << (win - 1).bit_length()
    x = torch.from_numpy(np.asarray(waveform, dtype=np.float32)) * scale
    if x.shape[0] < win:
        return np.zeros((0, num_mel_bins), dtype=np.float32)
    frames = x.unfold(0, win, hop).to(torch.float64)  # [F, win]
    frames = frames - frames.mean(dim=1, keepdim=True)
    shifted = torch.cat([frames[:, :1], frames[:, :-1]], dim=1)
    frames = frames - preemphasis * shifted
    window = torch.hann_window(win, periodic=False, dtype=torch.float64).pow(0.85)
    spec = torch.fft.rfft(frames * window, n=n_fft).abs().pow(2)  # [F, n_fft/2 + 1]
    banks = _kaldi_mel_banks(num_mel_bins, n_fft, sample_rate, low_freq, sample_rate / 2)
    mel = spec @ banks.t()
    eps = torch.finfo(torch.float32).eps
    return torch.log(torch.clamp(mel, min=eps)).to(torch.float32).numpy()


def _slaney_mel_filters(num_bins: int, n_fft: int, sample_rate: int, fmax: float) -> torch.Tensor:
    """Slaney-scale, Slaney-normalised triangular filters (librosa's default) -> [num_bins, n_fft/2 + 1]."""
    log_step = math.log(6.4) / 27.0

    def hz_to_mel(f):
        f = torch.as_tensor(f, dtype=torch.float64)
        return torch.where(f >= 1000.0, 15.0 + torch.log(f.clamp(min=1e-10) / 1000.0) / log_step, 3.0 * f / 200.0)

    def mel_to_hz(m):
        return torch.where(m >= 15.0, 1000.0 * torch.exp(log_step * (m - 15.0)), 200.0 * m / 3.0)

    fft_freqs = torch.linspace(0, sample_rate / 2, n_fft // 2 + 1, dtype=torch.float64)
    edges = mel_to_hz(torch.linspace(float(hz_to_mel(0.0)), float(hz_to_mel(fmax)), num_bins + 2, dtype=torch.float64))
    diff = edges[1:] - edges[:-1]
    slopes = edges[None, :] - fft_freqs[:, None]
    down = -slopes[:, :-2] / diff[:-1]
    up = slopes[:, 2:] / diff[1:]
    filters = torch.clamp(torch.minimum(down, up), min=0.0)  # [n_freq, num_bins]
    filters = filters * (2.0 / (edges[2 : num_bins + 2] - edges[:num_bins]))[None, :]
    return filters.t()


def whisper_log_mel(waveform: np.ndarray, sample_rate: int = 16000, num_mel_bins: int = 128) -> np.ndarray:
    """Whisper / Qwen2.5-Omni log mel spectrogram of the clip (see module doc).

    Args:
        waveform: float32 [N] in [-1, 1].
    Returns:
        float32 [N // 160, num_mel_bins].
    """
    n_fft, hop = 400, 160
    x = torch.from_numpy(np.asarray(waveform, dtype=np.float64))
    pad = n_fft // 2
    mode = "reflect" if x.shape[0] > pad else "constant"
    x = torch.nn.functional.pad(x[None, None], (pad, pad), mode=mode)[0, 0]
    frames = x.unfold(0, n_fft, hop)
    window = torch.hann_window(n_fft, periodic=True, dtype=torch.float64)
    spec = torch.fft.rfft(frames * window, n=n_fft).abs().pow(2)
    mel = spec @ _slaney_mel_filters(num_mel_bins, n_fft, sample_rate, 8000.0).t()
    log_spec = torch.log10(torch.clamp(mel, min=1e-10))[:-1]
    log_spec = torch.maximum(log_spec, log_spec.max() - 8.0)
    return ((log_spec + 4.0) / 4.0).to(torch.float32).numpy()


def audio_features(waveform: np.ndarray, kind: str, sample_rate: int, num_bins: int) -> np.ndarray:
    """Dispatch to the feature ``kind`` (one of FEATURE_KINDS) -> float32 [frames, num_bins]."""
    if kind == "kaldi_fbank":
        return kaldi_fbank(waveform, sample_rate, num_bins)
    if kind == "whisper_log_mel":
        return whisper_log_mel(waveform, sample_rate, num_bins)
    raise ValueError(f"unknown audio feature kind {kind!r} (known: {', '.join(FEATURE_KINDS)})")
