"""Which package frame each output frame shows (reference §7)."""

from __future__ import annotations

import numpy as np


def frame_schedule(count: int, frame_total: int, start: int = 0, loop: str = "pingpong") -> np.ndarray:
    """Package frame index for each output frame.

    pingpong follows the reference (§7): p = (i + 1 + start) mod 2L, idx = p if p <= L else 2L - p with
    L = frame_total - 1, i.e. 1, 2, ..., L, L-1, ..., 0, 1, ... for start 0; ``start`` shifts the phase.
    forward loops start, start+1, ..., frame_total-1, 0, ...
    """
    i = np.arange(count, dtype=np.int64)
    if loop == "forward" or frame_total == 1:
        return (i + start) % frame_total
    last = frame_total - 1
    p = (i + 1 + start) % (2 * last)
    return np.where(p <= last, p, 2 * last - p)
