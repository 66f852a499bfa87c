"""The two signals a review compares, per video frame, and how well one follows the other.

- **Mouth motion**: how much the mouth region of an output frame differs from the package frame it was rendered
  on (mean absolute difference of grey levels over the mouth area of the 328 crop: the masked region's centre,
  where the UNet draws the mouth). Silence gives about 0, an open mouth tens of levels. A frame without a face
  gives 0.
- **Loudness**: the RMS of each frame's 40 ms (640 samples at 16 kHz) of the output's own audio track, decoded
  from the AAC as a viewer hears it.
- **Lag**: the shift (in frames, -``MAX_LAG``..``MAX_LAG``) at which the two correlate best (Pearson r), positive
  when the mouth moves after the sound. The demo render of ``examples/hello.wav`` peaks at lag 0, r 0.86; its
  video with the audio of ``examples/pauses.wav`` peaks at r 0.09. An output is **flagged** when its best r is
  below ``MIN_R`` or its lag is more than ``MAX_GOOD_LAG`` frames: the mouth does not follow the audio.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from lipsync_render.contract import ROI
from lipsync_render.media.audio import load_audio
from lipsync_render.model_input import crop_328
from lipsync_render.rendering.frame_order import frame_schedule
from lipsync_render.rendering.silence import SAMPLES_PER_FRAME

MOUTH_ROWS, MOUTH_COLS = slice(110, 230), slice(80, 240)  # of the 320 model region: the mouth and a margin
MAX_LAG = 8  # frames each way searched for the best correlation
MIN_R = 0.5
MAX_GOOD_LAG = 1


@dataclass(frozen=True)
class Sync:
    """How the mouth follows the audio: the best lag (frames) and its correlation; None when not measurable."""

    lag: int | None
    r: float | None

    @property
    def flagged(self) -> bool:
        return self.r is None or self.r < MIN_R or abs(self.lag) > MAX_GOOD_LAG


def mouth_motion(
    frames: Iterable[np.ndarray],
    count: int,
    package,
    start_frame: int = 0,
    loop: str = "pingpong",
    on_frame: Callable[[np.ndarray, float], None] | None = None,
) -> np.ndarray:
    """Per output frame (``count`` of them), the mean absolute grey difference of its mouth area from its package
    frame's; ``on_frame(frame, motion)`` sees each frame (to pick a poster)."""
    schedule = frame_schedule(max(count, 1), package.frame_count, start_frame, loop)
    size = (package.width, package.height)
    faces = package.faces
    motion = []
    for number, frame in enumerate(frames):
        index = int(schedule[number % len(schedule)])
        if faces is not None and not faces[index]:
            motion.append(0.0)
            continue
        if frame.shape[1::-1] != size:
            frame = cv2.resize(frame, size, interpolation=cv2.INTER_AREA)
        rect = package.rects[index]
        rendered = _grey_mouth(crop_328(frame, rect))
        original = _grey_mouth(crop_328(np.asarray(package.frames[index]), rect))
        motion.append(float(np.abs(rendered - original).mean()))
        if on_frame is not None:
            on_frame(frame, motion[-1])
    return np.asarray(motion)


def _grey_mouth(c328: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(c328[ROI, ROI][MOUTH_ROWS, MOUTH_COLS], cv2.COLOR_BGR2GRAY).astype(np.float32)


def loudness(path: Path, frame_count: int) -> np.ndarray:
    """Per video frame, the RMS of its 40 ms of the file's audio track (16 kHz mono), 0 past the audio's end."""
    samples = load_audio(path)
    padded = np.zeros(frame_count * SAMPLES_PER_FRAME, np.float32)
    used = min(len(samples), len(padded))
    padded[:used] = samples[:used]
    return np.sqrt(np.mean(np.square(padded.reshape(frame_count, SAMPLES_PER_FRAME), dtype=np.float64), axis=1))


def best_lag(motion: np.ndarray, level: np.ndarray, max_lag: int = MAX_LAG) -> Sync:
    """The lag in frames (mouth after sound: positive) with the highest Pearson r of motion against loudness."""
    count = min(len(motion), len(level))
    best: Sync = Sync(None, None)
    for lag in range(-max_lag, max_lag + 1):
        m = motion[max(lag, 0) : count + min(lag, 0)]
        a = level[max(-lag, 0) : count - max(lag, 0)]
        if len(m) < 8 or m.std() == 0 or a.std() == 0:
            continue
        r = float(np.corrcoef(m, a)[0, 1])
        if best.r is None or r > best.r:
            best = Sync(lag, r)
    return best
