"""The per-frame feature table, produced in order by the features thread and read in order by the prepare thread.

Only a window of the table is held (a ring of rows): the writer waits when it is a ring ahead of the reader, and
each read releases the rows no later frame needs. With the mel streamed too, memory stays flat whatever the length
of the audio.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import numpy as np

from lipsync_render.contract import AUDIO_BLOCK_SHAPE, FEATURE_DIM, MEL_BINS
from lipsync_render.media import features
from lipsync_render.rendering.cancellation import POLL_SECONDS, Cancelled
from lipsync_render.runtimes.base import LoadedModel

ENCODE_CHUNK = 64  # encoder windows per chunk: rows become ready to read every 2.6 s of audio
HALF_BLOCK = features.BLOCK_ROWS // 2  # frame k reads rows k-8 .. k+7


def ring_rows(batch_size: int) -> int:
    """Rows to hold for reads of ``batch_size`` frames: one batch's rows, the writer's next chunk, and slack."""
    return batch_size + 2 * HALF_BLOCK + 4 * (ENCODE_CHUNK + 2)


class FeatureStream:
    """The feature table (N_enc + 2 rows, the first and last windows duplicated); readers wait for their rows."""

    def __init__(self, table_rows: int, capacity: int | None = None):
        self.table_rows = table_rows
        self.capacity = min(table_rows, capacity or table_rows)
        self.ring = np.zeros((self.capacity, FEATURE_DIM), np.float32)
        self.ready_rows = 0  # rows 0 .. ready_rows-1 are final
        self.released_rows = 0  # rows below this are no longer needed by any later frame
        self.condition = threading.Condition()

    @classmethod
    def from_table(cls, table: np.ndarray) -> FeatureStream:
        """A stream over a whole table, e.g. the package's pre-extracted features."""
        stream = cls(len(table))
        stream.ring[:] = table
        stream.ready_rows = len(table)
        return stream

    def fill(
        self, mel_chunks: Iterator[np.ndarray], mel_frames: int, audio_encoder: LoadedModel, cancel: threading.Event
    ) -> None:
        """Encode every window of a mel spectrogram of ``mel_frames`` frames arriving in chunks, publishing rows
        in order; only the mel rows the next windows read are kept."""
        count = self.table_rows - 2
        starts = features.window_starts(mel_frames)
        mel, mel_base = np.zeros((0, MEL_BINS), np.float32), 0  # mel rows from mel_base on
        for first in range(0, count, ENCODE_CHUNK):
            last = min(count, first + ENCODE_CHUNK)
            needed = min(mel_frames, starts[last - 1] + features.WINDOW_FRAMES)
            while mel_base + len(mel) < needed:
                if cancel.is_set():
                    return
                mel = np.concatenate([mel, next(mel_chunks)])
            if mel_frames < features.WINDOW_FRAMES:  # a clip under 187.5 ms: padded as encoder_windows does
                windows = features.encoder_windows(mel, first, last)
            else:
                windows = features.windows_at(mel, starts[first:last] - mel_base)
            encoded = features.encode(audio_encoder, windows)
            rows = encoded
            if first == 0:
                rows = np.concatenate([encoded[:1], rows])
            if last == count:
                rows = np.concatenate([rows, encoded[-1:]])
            self._publish(rows, cancel)
            if last < count:
                mel, mel_base = mel[starts[last] - mel_base :], int(starts[last])

    def _publish(self, rows: np.ndarray, cancel: threading.Event) -> None:
        """Append rows to the table once the reader has released room for them in the ring."""
        with self.condition:
            end = self.ready_rows + len(rows)
            while end - self.released_rows > self.capacity:
                if cancel.is_set():
                    raise Cancelled()
                self.condition.wait(POLL_SECONDS)
            positions = np.arange(self.ready_rows, end) % self.capacity
            self.ring[positions] = rows
            self.ready_rows = end
            self.condition.notify_all()

    def blocks(self, frame_numbers: np.ndarray, cancel: threading.Event) -> np.ndarray:
        """Audio inputs [n, 32, 16, 16] for output frames in increasing order, once the rows they read are final;
        frames with gaps between them (idle frames skipped) are read run by run."""
        frame_numbers = np.asarray(frame_numbers)
        if len(frame_numbers) == 0:
            return np.zeros((0, *AUDIO_BLOCK_SHAPE), np.float32)
        runs = np.split(frame_numbers, np.flatnonzero(np.diff(frame_numbers) > 1) + 1)
        return np.concatenate([self._run_blocks(run, cancel) for run in runs])

    def _run_blocks(self, frame_numbers: np.ndarray, cancel: threading.Event) -> np.ndarray:
        low = max(0, int(frame_numbers.min()) - HALF_BLOCK)
        high = min(self.table_rows, int(frame_numbers.max()) + HALF_BLOCK)
        with self.condition:
            # Released before waiting: a read that skips ahead (idle frames) lets the writer fill the rows it needs
            self._release(low)
            while self.ready_rows < high:
                if cancel.is_set():
                    raise Cancelled()
                self.condition.wait(POLL_SECONDS)
            window = self.ring[np.arange(low, high) % self.capacity] if high > low else self.ring[:0]
        # Rows outside [low, high) are outside the table, so frame_blocks' zero padding of the window is the table's
        return features.frame_blocks(window, np.asarray(frame_numbers) - low)

    def stop_reading(self) -> None:
        """No more reads: the writer may finish the table without waiting for room."""
        with self.condition:
            self._release(self.table_rows)

    def _release(self, rows: int) -> None:
        """Rows below ``rows`` are needed by no later read (they may not be written yet)."""
        self.released_rows = max(self.released_rows, rows)
        self.condition.notify_all()
