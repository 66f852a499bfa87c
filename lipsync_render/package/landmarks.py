"""SyncTalk_2D landmarks to crop rectangles (reference spec §5.2): one ``.lms`` file per frame, the mouth-and-jaw
square derived from it exactly as the reference does, and optional smoothing of the rectangles against jitter."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from lipsync_render.contract import face_rows
from lipsync_render.errors import PackageError

LANDMARK_COUNT = 110


class DegenerateLandmarks(PackageError):
    """A landmark file whose points are not finite: the detector found no face in its frame."""


def read_landmarks(path: str | os.PathLike) -> np.ndarray:
    """The 110 landmarks of one ``.lms`` file as (110, 2) int32: parsed as float32, then truncated (§5.2)."""
    path = Path(path)
    try:
        lines = path.read_text().strip().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise PackageError(f"Cannot read landmark file {path} ({exc}).") from None
    if len(lines) != LANDMARK_COUNT:
        raise PackageError(f"Landmark file {path} has {len(lines)} lines; expected {LANDMARK_COUNT} lines of 'x y'.")
    points = []
    for number, line in enumerate(lines, start=1):
        fields = line.split()
        try:
            point = [float(field) for field in fields]
        except ValueError:
            point = []
        if len(point) != 2:
            raise PackageError(f"Landmark file {path} line {number} is {line.strip()!r}, not two numbers 'x y'.")
        if not all(np.isfinite(point)):
            raise DegenerateLandmarks(f"Landmark file {path} line {number} is {line.strip()!r}, not a finite point.")
        points.append(point)
    return np.asarray(points, dtype=np.float32).astype(np.int32)


def landmark_rect(path: Path) -> tuple[int, int, int, int] | None:
    """The crop rectangle of one frame's landmark file, or None when the frame has no usable face: the file is
    missing, a point is not finite, or the rectangle is empty (x2 <= x1); a malformed file is still an error."""
    if not path.is_file():
        return None
    try:
        rect = crop_rect(read_landmarks(path))
    except DegenerateLandmarks:
        return None
    return rect if rect[2] > rect[0] else None


def crop_rect(landmarks: np.ndarray) -> tuple[int, int, int, int]:
    """The square mouth-and-jaw rectangle (x1, y1, x2, y2), half-open, exactly as the reference derives it."""
    xmin = int(landmarks[1][0])
    ymin = int(landmarks[52][1])
    xmax = int(landmarks[31][0])
    width = xmax - xmin
    return xmin, ymin, xmax, ymin + width


def smooth_rects(rects: np.ndarray, n: int, frame_size: tuple[int, int] | None = None) -> np.ndarray:
    """Centred moving average of each rectangle's centre and size over ``n`` frames, against jitter.

    The result stays square and integer; with ``frame_size`` (width, height) it is kept inside the frame.
    The window shrinks at the ends of the sequence instead of padding. ``n`` <= 1 returns the rects unchanged.
    Null rectangles (frames without a face) stay null and split the sequence: each run of faces is smoothed alone.
    """
    rects = np.asarray(rects, dtype=np.int64).reshape(-1, 4)
    faces = face_rows(rects)
    if n <= 1 or len(rects) < 2:
        return rects.astype(np.int32)
    out = rects.astype(np.int32)
    starts = np.flatnonzero(faces & ~np.concatenate([[False], faces[:-1]]))
    for start in starts.tolist():
        stop = start + int(np.argmin(np.append(faces[start:], False)))
        out[start:stop] = _smooth_run(rects[start:stop], n, frame_size)
    return out


def _smooth_run(rects: np.ndarray, n: int, frame_size: tuple[int, int] | None) -> np.ndarray:
    centre_x = (rects[:, 0] + rects[:, 2]) / 2.0
    centre_y = (rects[:, 1] + rects[:, 3]) / 2.0
    size = (rects[:, 2] - rects[:, 0]).astype(np.float64)
    before, after = (n - 1) // 2, n // 2
    centre_x, centre_y, size = (_centred_mean(v, before, after) for v in (centre_x, centre_y, size))

    size = np.maximum(np.rint(size), 1)
    if frame_size is not None:
        size = np.minimum(size, min(frame_size))
    x1 = np.rint(centre_x - size / 2)
    y1 = np.rint(centre_y - size / 2)
    if frame_size is not None:
        width, height = frame_size
        x1 = np.clip(x1, 0, width - size)
        y1 = np.clip(y1, 0, height - size)
    return np.stack([x1, y1, x1 + size, y1 + size], axis=1).astype(np.int32)


def _centred_mean(values: np.ndarray, before: int, after: int) -> np.ndarray:
    """Mean of values[i - before : i + after + 1] for every i, the window clipped to the sequence."""
    sums = np.concatenate([[0.0], np.cumsum(values)])
    index = np.arange(len(values))
    start = np.maximum(index - before, 0)
    stop = np.minimum(index + after + 1, len(values))
    return (sums[stop] - sums[start]) / (stop - start)
