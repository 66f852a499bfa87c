"""Audio input: any file libsndfile reads, as 16 kHz mono float32, whole or block by block.

Matches ``librosa.load(path, sr=16000)``: channels are averaged, other rates resampled with soxr "HQ" (librosa's
``soxr_hq``) and the result fixed to ``ceil(n * 16000 / rate)`` samples. Streamed, the blocks add up to exactly
the whole-file result (soxr's stream is bit-identical to its one-shot resampler), so a long file never has to be
in memory at once.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator

import numpy as np
import soundfile as sf
import soxr

from lipsync_render.errors import AudioError

SAMPLE_RATE = 16000
BLOCK_FRAMES = 1 << 16  # source frames read at a time: a few hundred KB whatever the length of the file


class AudioStream:
    """An audio file opened for reading as 16 kHz mono blocks; its length is known before any is read.

    Raises AudioError when the file is missing, not audio or empty; while reading, when it is corrupt, holds
    NaN/infinite samples or ends before its header says it does.
    """

    def __init__(self, path: str | os.PathLike):
        self.name = os.fspath(path)
        if not os.path.exists(self.name):
            raise AudioError(f"Audio file '{self.name}' does not exist.")
        if not os.path.isfile(self.name):
            raise AudioError(f"Audio path '{self.name}' is not a file.")
        try:
            info = sf.info(self.name)
        except (sf.SoundFileError, RuntimeError, OSError) as exc:
            raise self._unreadable(exc) from None
        self.rate, self.source_frames = int(info.samplerate), int(info.frames)
        if self.source_frames <= 0 or self.rate <= 0:
            raise AudioError(f"Audio file '{self.name}' contains no audio samples.")
        self.sample_count = resampled_length(self.source_frames, self.rate)

    @property
    def seconds(self) -> float:
        return self.sample_count / SAMPLE_RATE

    def blocks(self) -> Iterator[np.ndarray]:
        """The whole signal as consecutive float32 blocks, ``sample_count`` samples in all."""
        resampler = None
        if self.rate != SAMPLE_RATE:
            resampler = soxr.ResampleStream(self.rate, SAMPLE_RATE, 1, dtype="float32", quality="HQ")
        emitted = read = 0
        try:
            with sf.SoundFile(self.name) as file:
                while True:
                    block = file.read(BLOCK_FRAMES, dtype="float32", always_2d=True)
                    read += len(block)
                    last = len(block) < BLOCK_FRAMES or read >= self.source_frames
                    if not np.isfinite(block).all():
                        raise AudioError(f"Audio file '{self.name}' contains NaN or infinite samples.")
                    mono = block.mean(axis=1, dtype=np.float32) if block.shape[1] > 1 else block[:, 0]
                    if resampler is not None:
                        mono = resampler.resample_chunk(mono, last=last)
                    mono = np.ascontiguousarray(mono[: self.sample_count - emitted], dtype=np.float32)
                    emitted += len(mono)
                    if len(mono):
                        yield mono
                    if last:
                        break
        except (sf.SoundFileError, RuntimeError, OSError) as exc:
            raise self._unreadable(exc) from None
        if read == 0:
            raise AudioError(f"Audio file '{self.name}' contains no audio samples.")
        if read < self.source_frames:
            raise AudioError(
                f"Audio file '{self.name}' ends after {read / self.rate:.2f} s although its header "
                f"declares {self.source_frames / self.rate:.2f} s (a truncated file?)."
            )
        if emitted < self.sample_count:  # librosa's fix=True pads the resampled signal to its exact length
            yield np.zeros(self.sample_count - emitted, np.float32)

    def _unreadable(self, exc: Exception) -> AudioError:
        return AudioError(f"Audio file '{self.name}' could not be read as audio ({_describe(exc)}).")


def load_audio(path: str | os.PathLike) -> np.ndarray:
    """An audio file as float32 mono at 16 kHz, like ``librosa.load(path, sr=16000)`` (see :class:`AudioStream`)."""
    stream = AudioStream(path)
    return np.concatenate(list(stream.blocks()))


def resampled_length(frames: int, rate: int) -> int:
    """Samples at 16 kHz for ``frames`` at ``rate``: ``ceil(n * (16000 / rate))``, the ratio in floating point as
    librosa's ``fix`` computes it."""
    return frames if rate == SAMPLE_RATE else math.ceil(frames * (float(SAMPLE_RATE) / rate))


def _describe(error: Exception) -> str:
    """libsndfile's reason as a clause that fits inside one sentence."""
    text = getattr(error, "error_string", None) or str(error) or type(error).__name__
    text = text.strip().removeprefix("Error : ").rstrip(".")
    return text.replace(". ", "; ")
