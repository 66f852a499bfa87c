"""Audio input through FFmpeg (PyAV): any format it decodes, or the audio track of a video file, as float32 blocks.

Samples come out as libsndfile gives them (integer PCM scaled by a power of two), at the file's own rate and
channel count. The exact length is counted by a first decoding pass, since compressed formats only estimate it in
their headers; the pass also finds an undecodable file before anything is rendered. PyAV keeps FFmpeg's log lines
off (its default), so a problem is one AudioError sentence and nothing else.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import av
import numpy as np

from lipsync_render.errors import AudioError

BLOCK_FRAMES = 1 << 16  # samples per block handed on: a few hundred KB whatever the length of the file
DECODE_ERRORS = (av.FFmpegError, OSError, ValueError, EOFError, MemoryError)


class AudioSource:
    """An audio file opened for decoding; ``rate``, ``channels`` and ``frames`` (samples per channel) are known
    once it is made (``frames`` may be given when another process has counted them). Raises AudioError for a
    missing, unreadable or empty file, or one without an audio stream."""

    def __init__(self, path: str | os.PathLike, frames: int | None = None):
        self.name = os.fspath(path)
        if not os.path.exists(self.name):
            raise AudioError(f"Audio file '{self.name}' does not exist.")
        if not os.path.isfile(self.name):
            raise AudioError(f"Audio path '{self.name}' is not a file.")
        if os.path.getsize(self.name) == 0:
            raise AudioError(f"Audio file '{self.name}' could not be read as audio (it is empty).")
        with self._decoded_frames() as decoded:
            if frames is None:
                frames = sum(frame.samples for frame in decoded)
        if frames <= 0 or self.rate <= 0 or self.channels <= 0:
            raise AudioError(f"Audio file '{self.name}' contains no audio samples.")
        self.frames = frames

    @property
    def seconds(self) -> float:
        return self.frames / self.rate

    def blocks(self, block_frames: int = BLOCK_FRAMES) -> Iterator[np.ndarray]:
        """The whole file as consecutive (n, channels) float32 blocks, ``frames`` samples in all; AudioError for
        NaN or infinite samples, or a file that changed since it was opened."""
        pending: list[np.ndarray] = []
        buffered = emitted = 0
        with self._decoded_frames() as decoded:
            for frame in decoded:
                samples = _as_float(frame)
                if not np.isfinite(samples).all():
                    raise AudioError(f"Audio file '{self.name}' contains NaN or infinite samples.")
                pending.append(samples)
                buffered += len(samples)
                if buffered >= block_frames:
                    yield np.concatenate(pending)
                    emitted += buffered
                    pending, buffered = [], 0
        if pending:
            yield np.concatenate(pending)
            emitted += buffered
        if emitted != self.frames:
            raise AudioError(f"Audio file '{self.name}' changed while it was being read.")

    @contextlib.contextmanager
    def _decoded_frames(self) -> Iterator[Iterator[av.AudioFrame]]:
        """The first audio stream's decoded frames, FFmpeg's errors turned into one sentence."""
        try:
            with av.open(self.name, metadata_errors="ignore") as container:
                if not container.streams.audio:
                    raise AudioError(f"'{self.name}' has no audio stream.")
                stream = container.streams.audio[0]
                self.rate = int(stream.codec_context.sample_rate or 0)
                self.channels = int(stream.codec_context.channels or 0)
                yield container.decode(stream)
        except DECODE_ERRORS as exc:
            raise AudioError(f"Audio file '{self.name}' could not be read as audio ({_describe(exc)}).") from None


def _as_float(frame: av.AudioFrame) -> np.ndarray:
    """A decoded frame as (n, channels) float32, integer formats scaled exactly as libsndfile scales them."""
    samples = frame.to_ndarray()
    name = frame.format.name
    if not frame.format.is_planar:  # packed: one row of interleaved samples
        samples = samples.reshape(-1, len(frame.layout.channels)).T
    if name.startswith("flt"):
        return np.ascontiguousarray(samples.T)
    if name.startswith("dbl"):
        return np.ascontiguousarray(samples.T, dtype=np.float32)
    bits = samples.dtype.itemsize * 8
    if name.startswith("u8"):
        return ((samples.T.astype(np.float32) - 128) / np.float32(128)).astype(np.float32)
    return (samples.T.astype(np.float32) * np.float32(2.0 ** -(bits - 1))).astype(np.float32)


def _describe(error: Exception) -> str:
    """FFmpeg's reason as a clause that fits inside one sentence."""
    text = getattr(error, "strerror", None) or str(error) or type(error).__name__
    text = text.split(": '", 1)[0].strip().rstrip(".")
    return text.replace(". ", "; ")
