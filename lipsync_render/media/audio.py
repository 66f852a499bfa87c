"""Audio loading and the wav2lip/SyncTalk mel spectrogram, in plain numpy.

The mel follows the reference exactly (spec §1.2): pre-emphasis 0.97, zero-padded centred STFT with a periodic
Hann window (n_fft = win = 800, hop 200), magnitude, Slaney mel filterbank 55-7600 Hz, dB, symmetric clipping
to [-4, 4]. Everything is computed in float64, as librosa and scipy do in the reference.
"""

from __future__ import annotations

import os
from functools import cache

import numpy as np
import soundfile as sf
import soxr

from lipsync_render.errors import AudioError

SAMPLE_RATE = 16000
N_FFT = 800
HOP_LENGTH = 200
N_MELS = 80
FMIN = 55.0
FMAX = 7600.0
PREEMPHASIS = 0.97
MIN_LEVEL_DB = -100.0
REF_LEVEL_DB = 20.0
MAX_ABS_VALUE = 4.0

# Frames per rfft call: bounds the temporaries to ~7 MB whatever the length of the audio.
_STFT_CHUNK_FRAMES = 1024


def load_audio(path: str | os.PathLike) -> np.ndarray:
    """Read an audio file as float32 mono at 16 kHz, like ``librosa.load(path, sr=16000)``.

    Any file libsndfile reads works (WAV/FLAC/OGG/MP3..., integer or float samples, any rate and channel
    count). Channels are averaged; other rates are resampled with soxr "HQ" (librosa's ``soxr_hq``) and the
    result is fixed to ``ceil(n * 16000 / rate)`` samples, as librosa does.

    Raises:
        AudioError: the file is missing, not audio, corrupt, empty, or has NaN/infinite samples.
    """
    name = os.fspath(path)
    if not os.path.exists(name):
        raise AudioError(f"Audio file '{name}' does not exist.")
    if not os.path.isfile(name):
        raise AudioError(f"Audio path '{name}' is not a file.")

    try:
        with sf.SoundFile(name) as f:
            rate = f.samplerate
            samples = f.read(dtype="float32", always_2d=True)
    except (sf.SoundFileError, RuntimeError, OSError) as e:
        raise AudioError(f"Audio file '{name}' could not be read as audio ({_describe(e)}).") from None

    if samples.size == 0:
        raise AudioError(f"Audio file '{name}' contains no audio samples.")
    if not np.isfinite(samples).all():
        raise AudioError(f"Audio file '{name}' contains NaN or infinite samples.")

    mono = samples.mean(axis=1, dtype=np.float32) if samples.shape[1] > 1 else samples[:, 0]
    if rate != SAMPLE_RATE:
        mono = resample(mono, rate)
    return np.ascontiguousarray(mono, dtype=np.float32)


def _describe(error: Exception) -> str:
    """libsndfile's reason as a clause that fits inside one sentence."""
    text = getattr(error, "error_string", None) or str(error) or type(error).__name__
    text = text.strip().removeprefix("Error : ").rstrip(".")
    return text.replace(". ", "; ")


def resample(samples: np.ndarray, rate: int) -> np.ndarray:
    """Resample mono float32 ``samples`` from ``rate`` to 16 kHz exactly as librosa's ``soxr_hq`` path."""
    resampled = soxr.resample(samples, rate, SAMPLE_RATE, quality="HQ")
    # librosa.resample(fix=True): pad or trim to ceil(n * ratio), the ratio taken in floating point.
    length = int(np.ceil(samples.shape[-1] * (float(SAMPLE_RATE) / rate)))
    if resampled.shape[0] >= length:
        return resampled[:length]
    return np.pad(resampled, (0, length - resampled.shape[0]))


def melspectrogram(samples: np.ndarray) -> np.ndarray:
    """Mel spectrogram of 16 kHz ``samples`` as (T, 80) float32 in [-4, 4], T = 1 + len(samples) // 200."""
    mel = mel_amplitude(samples)
    return normalize_db(amp_to_db(mel) - REF_LEVEL_DB).astype(np.float32)


def preemphasis(samples: np.ndarray, pad: int = 0) -> np.ndarray:
    """``y[n] = x[n] - 0.97 x[n-1]``, ``y[0] = x[0]`` (scipy ``lfilter([1, -0.97], [1], x)``) in float64,
    with ``pad`` zeros on each side."""
    x = np.asarray(samples).reshape(-1)
    padded = np.zeros(len(x) + 2 * pad, dtype=np.float64)
    y = padded[pad : pad + len(x)]
    y[:1] = x[:1]
    # x[n] + (-0.97 x[n-1]) equals x[n] - 0.97 x[n-1] exactly, without a float64 copy of x
    np.multiply(x[:-1], -PREEMPHASIS, out=y[1:], dtype=np.float64)
    y[1:] += x[1:]
    return padded


def mel_amplitude(samples: np.ndarray) -> np.ndarray:
    """Mel filterbank applied to |STFT| of the pre-emphasised ``samples``, as (T, 80) float64.

    The STFT is librosa's with ``center=True, pad_mode='constant'``: 400 zeros each side, periodic Hann 800,
    hop 200. Frames are strided views of the padded signal and go through rfft a chunk at a time, so only the
    signal and the (T, 80) result scale with the length of the audio.
    """
    padded = preemphasis(samples, pad=N_FFT // 2)
    frames = np.lib.stride_tricks.sliding_window_view(padded, N_FFT)[::HOP_LENGTH]
    window = hann_window(N_FFT)
    filters = mel_filters().T  # (401, 80)
    mel = np.empty((frames.shape[0], N_MELS), dtype=np.float64)
    for start in range(0, frames.shape[0], _STFT_CHUNK_FRAMES):
        chunk = slice(start, start + _STFT_CHUNK_FRAMES)
        mel[chunk] = np.abs(np.fft.rfft(frames[chunk] * window, axis=-1)) @ filters
    return mel


@cache
def hann_window(length: int) -> np.ndarray:
    """Periodic Hann window (scipy ``get_window('hann', length, fftbins=True)``)."""
    n = np.arange(length)
    return 0.5 - 0.5 * np.cos(2.0 * np.pi * n / length)


@cache
def mel_filters() -> np.ndarray:
    """(80, 401) Slaney mel filterbank 55-7600 Hz, ``librosa.filters.mel(sr=16000, n_fft=800, n_mels=80,
    fmin=55, fmax=7600)``.

    librosa builds the basis in float32; the reference multiplies that float32 basis with the float64
    spectrum, so the weights are rounded to float32 and returned as float64.
    """
    fft_freqs = np.fft.rfftfreq(N_FFT, d=1.0 / SAMPLE_RATE)
    mel_points = np.linspace(hz_to_mel(FMIN), hz_to_mel(FMAX), N_MELS + 2)
    hz_points = mel_to_hz(mel_points)

    spacing = np.diff(hz_points)
    ramps = np.subtract.outer(hz_points, fft_freqs)
    lower = -ramps[:-2] / spacing[:-1, None]
    upper = ramps[2:] / spacing[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper)).astype(np.float32)

    # Slaney normalisation: each triangle has unit area in Hz.
    enorm = 2.0 / (hz_points[2 : N_MELS + 2] - hz_points[:N_MELS])
    weights *= enorm[:, None]  # in place: computed in float64, stored as float32 like librosa
    weights = weights.astype(np.float64)
    weights.flags.writeable = False
    return weights


# Slaney's mel scale (librosa's default, htk=False): linear below 1 kHz, logarithmic above.
SLANEY_HZ_PER_MEL = 200.0 / 3
SLANEY_LOG_HZ = 1000.0
SLANEY_LOG_MEL = SLANEY_LOG_HZ / SLANEY_HZ_PER_MEL
SLANEY_LOG_STEP = np.log(6.4) / 27.0


def hz_to_mel(hz: float | np.ndarray) -> np.ndarray:
    """Slaney mel scale: linear below 1 kHz, logarithmic above."""
    hz = np.asarray(hz, dtype=np.float64)
    safe_hz = np.maximum(hz, SLANEY_LOG_HZ)
    return np.where(
        hz >= SLANEY_LOG_HZ, SLANEY_LOG_MEL + np.log(safe_hz / SLANEY_LOG_HZ) / SLANEY_LOG_STEP, hz / SLANEY_HZ_PER_MEL
    )


def mel_to_hz(mel: float | np.ndarray) -> np.ndarray:
    """Inverse of :func:`hz_to_mel`."""
    mel = np.asarray(mel, dtype=np.float64)
    return np.where(
        mel >= SLANEY_LOG_MEL, SLANEY_LOG_HZ * np.exp(SLANEY_LOG_STEP * (mel - SLANEY_LOG_MEL)), SLANEY_HZ_PER_MEL * mel
    )


def amp_to_db(amplitude: np.ndarray) -> np.ndarray:
    """``20 log10(max(1e-5, x))`` with the floor written as the reference computes it."""
    min_level = np.exp(MIN_LEVEL_DB / 20 * np.log(10))
    return 20 * np.log10(np.maximum(min_level, amplitude))


def normalize_db(db: np.ndarray) -> np.ndarray:
    """Symmetric normalisation ``clip(8 (S + 100) / 100 - 4, -4, 4)``."""
    scaled = (2 * MAX_ABS_VALUE) * ((db - MIN_LEVEL_DB) / (-MIN_LEVEL_DB)) - MAX_ABS_VALUE
    return np.clip(scaled, -MAX_ABS_VALUE, MAX_ABS_VALUE)


def mel_frame_count(num_samples: int) -> int:
    """Number of mel frames for ``num_samples`` samples: ``1 + num_samples // 200``."""
    return 1 + num_samples // HOP_LENGTH
