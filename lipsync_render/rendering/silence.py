"""Silence detection for ``--silence idle``: how far each video frame fades to the untouched package frame.

Every threshold lives here:

- a frame's audio window is its own 40 ms of the 16 kHz signal (samples 640n .. 640n+639; the last frame the
  samples it has). The frame is **loud** when the RMS level of that window is above ``SILENCE_DBFS`` (-50 dBFS,
  full scale = 1.0). Quiet speech sounds sit around -40 dBFS, SoX dither and good room noise near -90 to -60.
- a frame is **speaking** when a loud frame lies at most ``HANGOVER_FRAMES`` (4, 160 ms) before it, so word
  endings and the mouth closing after them are still rendered, or at most ``LEAD_IN_FRAMES`` (2, 80 ms) after
  it, so the mouth starts to move as the sound starts.
- frames 1 .. ``FADE_FRAMES`` (3) away from the nearest speaking frame cross-fade to the package frame with
  weights 1/4, 2/4, 3/4; frames further away are **idle** (weight 1): the package frame itself, no UNet run.

So a pause yields idle frames only when it is longer than 12 quiet frames (480 ms); frames before the audio's
first and after its last frame count as quiet. Weights are computed as the audio streams, with a look-ahead of
``FADE_FRAMES + LEAD_IN_FRAMES`` frames: only a few frames of levels are ever held.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator

import numpy as np

from lipsync_render.contract import VIDEO_FPS
from lipsync_render.media.audio import SAMPLE_RATE

SILENCE_DBFS = -50.0
HANGOVER_FRAMES = 4
LEAD_IN_FRAMES = 2
FADE_FRAMES = 3
SAMPLES_PER_FRAME = SAMPLE_RATE // VIDEO_FPS  # 640
LOOK_BEHIND = FADE_FRAMES + HANGOVER_FRAMES  # frames of context a frame's weight depends on, before and after it
LOOK_AHEAD = FADE_FRAMES + LEAD_IN_FRAMES


def frame_levels(blocks: Iterable[np.ndarray], frame_count: int) -> Iterator[np.ndarray]:
    """RMS level in dBFS of each video frame's audio window, in chunks as the 16 kHz ``blocks`` arrive;
    ``frame_count`` levels in all (frames the audio does not reach are digital silence)."""
    pending = np.zeros(0, np.float32)
    done = 0
    for block in blocks:
        pending = np.concatenate([pending, np.asarray(block, np.float32)])
        whole = min(len(pending) // SAMPLES_PER_FRAME, frame_count - done)
        if whole:
            frames = pending[: whole * SAMPLES_PER_FRAME].reshape(whole, SAMPLES_PER_FRAME)
            yield _dbfs(np.mean(np.square(frames, dtype=np.float64), axis=1))
            pending, done = pending[whole * SAMPLES_PER_FRAME :], done + whole
    if done < frame_count and len(pending):
        yield _dbfs(np.mean(np.square(pending, dtype=np.float64), keepdims=True))
        done += 1
    if done < frame_count:
        yield np.full(frame_count - done, -np.inf)


def _dbfs(mean_square: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore"):
        return 10.0 * np.log10(mean_square)


def still_weights(loud: np.ndarray) -> np.ndarray:
    """Package-frame weight (0: rendered, 1: idle) of each frame of a run of frames, from their loud flags;
    frames outside the run count as quiet, so only the weights ``LOOK_BEHIND`` in from its start (unless it is
    the audio's start) and ``LOOK_AHEAD`` in from its end (unless it is the audio's end) are final."""
    speaking = _near(np.asarray(loud, bool), before=LEAD_IN_FRAMES, after=HANGOVER_FRAMES)
    weights = np.ones(len(speaking))
    for distance in range(FADE_FRAMES, -1, -1):  # the nearest speaking frame decides
        weights[_near(speaking, before=distance, after=distance)] = distance / (FADE_FRAMES + 1)
    return weights


def _near(flags: np.ndarray, before: int, after: int) -> np.ndarray:
    """True where a flagged frame lies at most ``after`` frames earlier or ``before`` frames later."""
    counts = np.concatenate([[0], np.cumsum(flags)])
    index = np.arange(len(flags))
    return counts[np.minimum(len(flags), index + before + 1)] - counts[np.maximum(0, index - after)] > 0


def stream_still_weights(blocks: Iterable[np.ndarray], frame_count: int) -> Iterator[float]:
    """The package-frame weight of frames 0 .. frame_count-1 in order, computed as the audio ``blocks`` stream."""
    window = np.zeros(LOOK_BEHIND, bool)  # loud flags from frame `emitted - LOOK_BEHIND` on
    emitted = 0
    trailing_quiet = [np.full(LOOK_AHEAD, -np.inf)]
    for levels in itertools.chain(frame_levels(blocks, frame_count), trailing_quiet):
        window = np.concatenate([window, levels > SILENCE_DBFS])
        ready = min(len(window) - LOOK_BEHIND - LOOK_AHEAD, frame_count - emitted)
        if ready <= 0:
            continue
        yield from still_weights(window)[LOOK_BEHIND : LOOK_BEHIND + ready].tolist()
        emitted += ready
        window = window[ready:]


def idle_ranges(weights: Iterable[float]) -> list[tuple[int, int]]:
    """The runs of idle frames (weight 1) as (first, last) frame numbers, for reports."""
    ranges: list[tuple[int, int]] = []
    for number, weight in enumerate(weights):
        if weight < 1:
            continue
        if ranges and ranges[-1][1] == number - 1:
            ranges[-1] = (ranges[-1][0], number)
        else:
            ranges.append((number, number))
    return ranges
