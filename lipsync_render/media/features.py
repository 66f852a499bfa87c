"""Audio features for the UNet: mel windows, AVE encoder inference and per-frame (32, 16, 16) blocks.

Follows the reference (spec §1.3 and §3): one 16-frame mel window per 40 ms video frame, encoded to 512
features, first/last rows duplicated, and each video frame k takes rows k-8 .. k+7 of that table (zeros
outside it), reshaped to (32, 16, 16).
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np

from lipsync_render.contract import (
    AUDIO_BLOCK_SHAPE,
    FEATURE_DIM,
    MEL_WINDOW,
    VIDEO_FPS,
    ModelContract,
    require_finite,
)
from lipsync_render.media.audio import SAMPLE_RATE
from lipsync_render.media.mel import MEL_FPS, melspectrogram


class AudioEncoder(Protocol):
    """What encoding needs of a loaded audio encoder (any runtime's ``LoadedModel`` has it): run it, and name it
    in the message when its output is not finite. Declared here so the media layer needs no runtime."""

    contract: ModelContract
    path: Path | None

    def run(self, *inputs: np.ndarray) -> np.ndarray: ...


WINDOW_FRAMES = MEL_WINDOW  # mel frames per encoder window
BLOCK_ROWS = AUDIO_BLOCK_SHAPE[0] * AUDIO_BLOCK_SHAPE[1] * AUDIO_BLOCK_SHAPE[2] // FEATURE_DIM  # 16: rows k-8..k+7
# The mel value of digital silence (amplitude below 1e-4 clips to -4); used to pad very short audio.
MEL_SILENCE = -4.0


def encoder_window_count(num_mel_frames: int) -> int:
    """Number of encoder windows: ``int((T - 16) / 80. * 25.) + 2``, evaluated in IEEE double in that order.

    The float rounding is part of the reference: for some T where (T - 16) * 25 is a multiple of 80 it gives
    one window less than exact integer math (T = 384: 368 / 80 * 25 = 114.99999999999999, so 116 windows, not
    117). Fewer than 16 frames count as 16, see :func:`encoder_windows`.
    """
    num_mel_frames = max(int(num_mel_frames), WINDOW_FRAMES)
    return int((num_mel_frames - WINDOW_FRAMES) / MEL_FPS * float(VIDEO_FPS)) + 2


def window_starts(num_mel_frames: int) -> np.ndarray:
    """First mel frame of every encoder window: ``int(80. * (i / 25.))``, clamped so the window ends by T."""
    count = encoder_window_count(num_mel_frames)
    starts = (MEL_FPS * (np.arange(count) / float(VIDEO_FPS))).astype(np.int64)
    return np.minimum(starts, max(num_mel_frames, WINDOW_FRAMES) - WINDOW_FRAMES)


def encoder_windows(mel: np.ndarray, first: int = 0, stop: int | None = None) -> np.ndarray:
    """Encoder inputs [N, 1, 80, 16] float32 from a (T, 80) mel: window i is ``mel[s_i:s_i+16].T``.

    ``first``/``stop`` select windows first..stop-1 only, so long audio can be encoded in bounded chunks.

    The reference cannot handle T < 16 (audio under 187.5 ms). Here such a mel is padded at the end to 16
    frames with -4, the value silence has in the normalised mel, so a very short clip reads as that clip
    followed by silence rather than as a burst of mid-level noise (which zeros would be).
    """
    mel = np.asarray(mel, dtype=np.float32)
    if mel.ndim != 2:
        raise ValueError(f"mel must be (T, n_mels), got shape {mel.shape}")
    if mel.shape[0] < WINDOW_FRAMES:
        padding = ((0, WINDOW_FRAMES - mel.shape[0]), (0, 0))
        mel = np.pad(mel, padding, constant_values=MEL_SILENCE)
    return windows_at(mel, window_starts(mel.shape[0])[first:stop])


def windows_at(mel: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Encoder inputs [N, 1, 80, 16] float32: the 16-frame windows of a (T, 80) mel beginning at ``starts``."""
    # views[s] is mel[s:s+16] already transposed to (n_mels, 16)
    views = np.lib.stride_tricks.sliding_window_view(np.asarray(mel, np.float32), WINDOW_FRAMES, axis=0)
    return np.ascontiguousarray(views[starts][:, None])


def encode(audio_encoder: AudioEncoder, windows: np.ndarray) -> np.ndarray:
    """AVE features [N, 512] float32 of encoder windows [N, 1, 80, 16] (the model batches them)."""
    if len(windows) == 0:
        return np.zeros((0, FEATURE_DIM), dtype=np.float32)
    return require_finite(audio_encoder.run(windows), audio_encoder.contract, audio_encoder.path)


def frame_features(encoded: np.ndarray) -> np.ndarray:
    """Per-frame feature table [N + 2, 512]: the encoder outputs with the first and last rows duplicated."""
    encoded = np.asarray(encoded, dtype=np.float32)
    return np.concatenate([encoded[:1], encoded, encoded[-1:]])


def audio_features(samples: np.ndarray, audio_encoder: AudioEncoder) -> np.ndarray:
    """Feature table [N_enc + 2, 512] of 16 kHz ``samples``: mel, windows, AVE encoder, end duplication."""
    return frame_features(encode(audio_encoder, encoder_windows(melspectrogram(samples))))


def frame_blocks(table: np.ndarray, indices) -> np.ndarray:
    """UNet audio inputs [n, 32, 16, 16] float32 for video frames ``indices`` of a [L, 512] feature table.

    Frame k takes rows k-8 .. k+7; rows outside [0, L) are zeros, as the reference pads. That includes frames
    at or beyond L: a video that covers the whole audio (:func:`frame_count_for_audio`) has one or two more
    frames than the table, and they get the same zero padding rather than an error. Channel 2t holds
    features 0..255 of row t, channel 2t+1 features 256..511, each as 16x16 row-major.
    """
    table = np.asarray(table)
    if table.ndim != 2 or table.shape[1] != FEATURE_DIM:
        raise ValueError(f"feature table must be (L, {FEATURE_DIM}), got shape {table.shape}")
    indices = np.asarray(indices, dtype=np.int64).reshape(-1)
    if len(table) == 0:
        return np.zeros((len(indices), *AUDIO_BLOCK_SHAPE), dtype=np.float32)
    rows = indices[:, None] + np.arange(-BLOCK_ROWS // 2, BLOCK_ROWS // 2)
    inside = (rows >= 0) & (rows < len(table))
    # Gather with clipped indices, then zero the rows outside the table: no padded copy of the whole table.
    blocks = table.take(rows, axis=0, mode="clip").astype(np.float32, copy=False)
    blocks[~inside] = 0.0
    return blocks.reshape(len(indices), *AUDIO_BLOCK_SHAPE)


def frame_block(table: np.ndarray, k: int) -> np.ndarray:
    """UNet audio input (32, 16, 16) float32 for video frame ``k``; see :func:`frame_blocks`."""
    return frame_blocks(table, [k])[0]


def frame_count_for_audio(num_samples: int) -> int:
    """Video frames (25 fps) needed to cover ``num_samples`` at 16 kHz: ``ceil(num_samples / 16000 * 25)``."""
    return -(-int(num_samples) * VIDEO_FPS // SAMPLE_RATE)
