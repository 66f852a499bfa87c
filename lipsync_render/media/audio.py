"""Audio input: any file FFmpeg decodes (``audio_source``), as 16 kHz mono float32, whole or block by block.

Matches ``librosa.load(path, sr=16000)``: channels are averaged, other rates resampled with soxr "HQ" (librosa's
``soxr_hq``) and the result fixed to ``ceil(n * 16000 / rate)`` samples. Streamed, the blocks add up to exactly
the whole-file result (soxr's stream is bit-identical to its one-shot resampler), so a long file never has to be
in memory at once.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import soxr

from lipsync_render.media.audio_source import AudioSource

SAMPLE_RATE = 16000


class AudioStream:
    """An audio file opened for reading as 16 kHz mono blocks; its length is known before any is read.

    Raises AudioError when the file is missing, not audio, has no audio stream or is empty; while reading, when it
    holds NaN/infinite samples or changes underneath.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.source = AudioSource(path)
        self.name = self.source.name
        self.rate = self.source.rate
        self.sample_count = resampled_length(self.source.frames, self.rate)

    @property
    def seconds(self) -> float:
        return self.sample_count / SAMPLE_RATE

    def blocks(self) -> Iterator[np.ndarray]:
        """The whole signal as consecutive float32 blocks, ``sample_count`` samples in all."""
        resampler = None
        if self.rate != SAMPLE_RATE:
            resampler = soxr.ResampleStream(self.rate, SAMPLE_RATE, 1, dtype="float32", quality="HQ")
        emitted = read = 0
        for block in self.source.blocks():
            read += len(block)
            mono = block.mean(axis=1, dtype=np.float32) if block.shape[1] > 1 else block[:, 0]
            if resampler is not None:
                mono = resampler.resample_chunk(mono, last=read >= self.source.frames)
            mono = np.ascontiguousarray(mono[: self.sample_count - emitted], dtype=np.float32)
            emitted += len(mono)
            if len(mono):
                yield mono
        if emitted < self.sample_count:  # librosa's fix=True pads the resampled signal to its exact length
            yield np.zeros(self.sample_count - emitted, np.float32)


def load_audio(path: str | os.PathLike) -> np.ndarray:
    """An audio file as float32 mono at 16 kHz, like ``librosa.load(path, sr=16000)`` (see :class:`AudioStream`)."""
    stream = AudioStream(path)
    return np.concatenate(list(stream.blocks()))


def resampled_length(frames: int, rate: int) -> int:
    """Samples at 16 kHz for ``frames`` at ``rate``: ``ceil(n * (16000 / rate))``, the ratio in floating point as
    librosa's ``fix`` computes it."""
    return frames if rate == SAMPLE_RATE else math.ceil(frames * (float(SAMPLE_RATE) / rate))
