"""The wav2lip/SyncTalk mel spectrogram in plain numpy, of a whole signal or of one arriving in blocks.

Follows the reference exactly (spec §1.2): pre-emphasis 0.97, zero-padded centred STFT with a periodic Hann
window (n_fft = win = 800, hop 200), magnitude, Slaney mel filterbank 55-7600 Hz, dB, symmetric clipping to
[-4, 4]. Everything is computed in float64, as librosa and scipy do in the reference. Frames go through rfft in
chunks of 1024 aligned to the first frame whether the signal comes whole or in blocks, so both give the same
bits, and a stream only ever holds one chunk of signal.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from functools import cache

import numpy as np

from lipsync_render.media.audio import SAMPLE_RATE

N_FFT = 800
HOP_LENGTH = 200
N_MELS = 80
FMIN = 55.0
FMAX = 7600.0
PREEMPHASIS = 0.97
MIN_LEVEL_DB = -100.0
REF_LEVEL_DB = 20.0
MAX_ABS_VALUE = 4.0
MEL_FPS = SAMPLE_RATE / HOP_LENGTH  # 80 mel frames per second

# Frames per rfft call: bounds the temporaries to ~7 MB whatever the length of the audio.
_STFT_CHUNK_FRAMES = 1024


def melspectrogram(samples: np.ndarray) -> np.ndarray:
    """Mel spectrogram of 16 kHz ``samples`` as (T, 80) float32 in [-4, 4], T = 1 + len(samples) // 200."""
    return np.concatenate(list(mel_chunks([samples], len(samples))))


def mel_chunks(blocks: Iterable[np.ndarray], sample_count: int) -> Iterator[np.ndarray]:
    """The mel spectrogram of a signal of ``sample_count`` samples given as consecutive ``blocks``, as (t, 80)
    float32 chunks in order; they concatenate to exactly ``melspectrogram`` of the whole signal."""
    for amplitude in _amplitude_chunks(blocks, sample_count):
        yield normalize_db(amp_to_db(amplitude) - REF_LEVEL_DB).astype(np.float32)


def mel_amplitude(samples: np.ndarray) -> np.ndarray:
    """Mel filterbank applied to |STFT| of the pre-emphasised ``samples``, as (T, 80) float64.

    The STFT is librosa's with ``center=True, pad_mode='constant'``: 400 zeros each side, periodic Hann 800,
    hop 200.
    """
    return np.concatenate(list(_amplitude_chunks([samples], len(samples))))


def _amplitude_chunks(blocks: Iterable[np.ndarray], sample_count: int) -> Iterator[np.ndarray]:
    chunk_frames = _STFT_CHUNK_FRAMES
    total = mel_frame_count(sample_count)
    window, filters = hann_window(N_FFT), mel_filters().T  # filters (401, 80)
    pending = np.zeros(N_FFT // 2)  # the padded, pre-emphasised signal from padded index `base` on
    base = frame = received = 0
    previous = None  # the last sample of the previous block, for the pre-emphasis

    def ready_chunks() -> Iterator[np.ndarray]:
        """The chunks whose frames the signal so far covers (the last one needs the trailing padding)."""
        nonlocal pending, base, frame
        while frame < total:
            stop = min(frame + chunk_frames, total)
            end = (stop - 1) * HOP_LENGTH + N_FFT  # one past the last padded sample the chunk reads
            if base + len(pending) < end:
                return
            span = pending[frame * HOP_LENGTH - base : end - base]
            frames = np.lib.stride_tricks.sliding_window_view(span, N_FFT)[::HOP_LENGTH]
            yield np.abs(np.fft.rfft(frames * window, axis=-1)) @ filters
            frame = stop
            pending, base = pending[frame * HOP_LENGTH - base :], frame * HOP_LENGTH

    for block in blocks:
        x = np.asarray(block).reshape(-1)
        if not len(x):
            continue
        y = preemphasis(x) if previous is None else preemphasis(np.concatenate([previous, x]))[1:]
        previous, received = x[-1:], received + len(x)
        pending = np.concatenate([pending, y])
        yield from ready_chunks()
    if received != sample_count:
        raise ValueError(f"the blocks hold {received} samples, not the {sample_count} announced")
    pending = np.concatenate([pending, np.zeros(N_FFT // 2)])
    yield from ready_chunks()


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
