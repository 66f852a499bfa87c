"""UNet batches: runs of consecutive output frames holding up to a batch of frames the UNet must render.

Frames that stay the package frame (``--silence idle``) ride along in the run without a UNet slot, so the
UNet's batches stay full however the silences fall.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np

MAX_SPAN = 64  # frames per run at most once it holds a batch size of frames, so long silences still flow


@dataclass(frozen=True)
class Batch:
    """Consecutive output frames and how far each fades to its package frame (0: rendered, 1: untouched)."""

    numbers: np.ndarray
    still_weights: np.ndarray

    @property
    def rendered(self) -> np.ndarray:
        """The frames that need a UNet prediction, in order."""
        return self.numbers[self.still_weights < 1]


def plan_batches(frame_count: int, still_weights: Iterable[float], size: int, first: int) -> Iterator[Batch]:
    """Runs of frames 0 .. frame_count-1: the first holds ``first`` rendered frames, the others ``size``
    (the last fewer), each at most ``max(size, MAX_SPAN)`` frames long."""
    span, limit = max(size, MAX_SPAN), first
    start, weights, rendered = 0, [], 0
    for number, weight in zip(range(frame_count), still_weights):
        weights.append(weight)
        rendered += weight < 1
        if rendered == limit or len(weights) == span:
            yield Batch(np.arange(start, number + 1), np.array(weights))
            start, weights, rendered, limit = number + 1, [], 0, size
    if weights:
        yield Batch(np.arange(start, start + len(weights)), np.array(weights))
