"""The per-frame feature table, filled in chunks by the features thread while the prepare thread reads it."""

from __future__ import annotations

import threading

import numpy as np

from lipsync_render.contract import FEATURE_DIM
from lipsync_render.render import features
from lipsync_render.render.cancellation import POLL_SECONDS, Cancelled
from lipsync_render.runtimes.base import LoadedModel

ENCODE_CHUNK = 64  # encoder windows per chunk: rows become ready to read every 2.6 s of audio


class FeatureStream:
    """The feature table (N_enc + 2 rows); readers wait for the rows they need."""

    def __init__(self, table_rows: int):
        self.table = np.zeros((table_rows, FEATURE_DIM), np.float32)
        self.ready_rows = 0
        self.condition = threading.Condition()

    @classmethod
    def from_table(cls, table: np.ndarray) -> FeatureStream:
        stream = cls(len(table))
        stream.table[:] = table
        stream.ready_rows = len(table)
        return stream

    def fill(self, mel: np.ndarray, audio_encoder: LoadedModel, cancel: threading.Event) -> None:
        """Encode all windows of ``mel`` chunk by chunk, publishing rows as they become final."""
        count = len(self.table) - 2
        for first in range(0, count, ENCODE_CHUNK):
            if cancel.is_set():
                return
            last = min(count, first + ENCODE_CHUNK)
            encoded = features.encode(audio_encoder, features.encoder_windows(mel, first, last))
            with self.condition:
                self.table[first + 1 : last + 1] = encoded
                if first == 0:
                    self.table[0] = encoded[0]
                if last == count:
                    self.table[-1] = encoded[-1]
                self.ready_rows = len(self.table) if last == count else last + 1
                self.condition.notify_all()

    def blocks(self, frame_numbers: np.ndarray, cancel: threading.Event) -> np.ndarray:
        """Audio inputs [n, 32, 16, 16] for output frames, once the rows they read are final."""
        needed = min(len(self.table), int(frame_numbers.max()) + features.BLOCK_ROWS // 2)
        with self.condition:
            while self.ready_rows < needed:
                if cancel.is_set():
                    raise Cancelled()
                self.condition.wait(POLL_SECONDS)
        return features.frame_blocks(self.table, frame_numbers)
