"""Frames without a face: a package frame whose rectangle is null (a cut-away, a turned head) is shown untouched.

Such a frame is treated exactly like an idle frame of ``--silence idle`` with still weight 1: it rides along in
its UNet batch without a slot, the UNet never sees it, and the compositing worker copies the package frame. The
audio keeps its pace, since every output frame still takes its 40 ms; frames around it are rendered as usual
(the source video itself cuts there, so no cross-fade is added).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np


def still_weights(weights: Iterable[float], schedule: np.ndarray, faces: np.ndarray | None) -> Iterator[float]:
    """The output frames' still weights (one per entry of ``schedule``, the package frame of each output frame)
    with 1.0 wherever that package frame has no face (``faces[index]`` False; None: every frame has one)."""
    if faces is None or faces.all():
        yield from (weight for _, weight in zip(schedule, weights))
        return
    for index, weight in zip(schedule.tolist(), weights):
        yield weight if faces[index] else 1.0
