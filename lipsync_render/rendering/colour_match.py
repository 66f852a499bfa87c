"""Colour match (``--colour-match auto``): take a model's colour cast out of its prediction before it is pasted.

A trained UNet often returns the face a few levels off in colour, so its 320x320 region shows as a tinted box
(LiveTalking #379, LatentSync #353). Outside the mouth mask (``model_input.MASK_ROWS`` / ``MASK_COLS``) the model
is meant to reproduce its input: the ring of 7 850 pixels there (5 px at the top, left and right, 10 at the
bottom) is where a cast can be measured without the mouth's own change. Per BGR channel, a gain and an offset are
fitted that map the prediction's ring onto the original crop's ring:

- **robust**: from quantiles (10th..90th percentile) of the two rings, not from pixel pairs or means, so a few
  pixels the model gets wrong (hair, an edge of the mouth) barely move it; a channel whose ring spans less than
  ``MIN_SPREAD`` levels gets an offset only (a gain from a flat ring would be noise).
- **limited**: gain within ``GAIN_LIMITS``, offset within ``MAX_OFFSET`` levels, and per frame a channel's
  correction is dropped when it would not bring that frame's ring closer to the original (mean absolute
  difference): a wild fit cannot make a frame worse on the pixels it is judged on.
- **smoothed**: exponential smoothing over the frames in output order (each new fit weighs ``SMOOTHING``, a
  time constant of about 5 frames, 0.2 s), so the colour does not flicker with the mouth or the background.

It is applied to the whole prediction as a 256-entry table per channel (``cv2.LUT``), before the paste and the
feather blend, so pixels outside the face rectangle never change. Per-channel BGR gain and offset undo a constant
cast exactly and are exact and cheap as tables; a Lab fit was the alternative, but its 8-bit round trip alone
moves pixels by up to 2 levels and the float one costs a conversion of the region each way per frame.

Fitting needs the frames in order, and compositing runs in worker processes out of order, so the work is split:
the prepare thread keeps each frame's original ring (:meth:`ColourMatcher.remember`), the dispatch thread fits
and smooths in frame order (:meth:`ColourMatcher.correction`) and the worker applies the small
:class:`Correction` it receives with the frame's task. Measured per frame on the shared 2-core machine while a
test suite ran: 0.9 ms to keep a ring (prepare thread), 2.0 ms to fit, smooth and limit (dispatch thread; the
quantiles come from histograms, a tenth of ``np.percentile``'s 2.4 ms), 0.4 ms to apply (worker). Off, none of it
runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import cv2
import numpy as np

from lipsync_render.contract import ROI, ROI_SIZE
from lipsync_render.model_input import MASK_COLS, MASK_ROWS

QUANTILES = (10, 25, 50, 75, 90)
MIN_SPREAD = 12.0  # levels between the 10th and 90th percentile of a ring below which no gain is fitted
GAIN_LIMITS = (0.8, 1.25)
MAX_OFFSET = 48.0  # levels
SMOOTHING = 0.2  # weight of a frame's own fit in the running correction


@cache
def ring_mask() -> np.ndarray:
    """(320, 320) bool: the model region outside the mouth mask, where the prediction should equal the crop."""
    ring = np.ones((ROI_SIZE, ROI_SIZE), bool)
    ring[MASK_ROWS, MASK_COLS] = False
    ring.flags.writeable = False
    return ring


def ring_pixels(region: np.ndarray) -> np.ndarray:
    """(K, 3) uint8: the ring's pixels of a (320, 320, 3) region."""
    return region[ring_mask()]


@dataclass(frozen=True)
class Correction:
    """Per-channel (B, G, R) gain and offset in levels: ``out = gain * in + offset``, rounded and clipped."""

    gain: tuple[float, float, float] = (1.0, 1.0, 1.0)
    offset: tuple[float, float, float] = (0.0, 0.0, 0.0)

    def table(self) -> np.ndarray:
        """The (1, 256, 3) uint8 lookup table of the correction."""
        levels = np.arange(256, dtype=np.float64)[:, None]
        mapped = levels * np.asarray(self.gain) + np.asarray(self.offset)
        return np.clip(np.rint(mapped), 0, 255).astype(np.uint8)[None]

    @property
    def is_identity(self) -> bool:
        return bool((self.table()[0] == np.arange(256, dtype=np.uint8)[:, None]).all())

    def apply(self, prediction: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """The corrected (320, 320, 3) uint8 prediction."""
        return cv2.LUT(prediction, self.table(), dst=out)


def fit(predicted: np.ndarray, original: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(gain, offset), each (3,), mapping the ``predicted`` ring's quantiles onto the ``original`` ring's, limited."""
    qp, qo = quantiles(predicted), quantiles(original)
    gain = np.ones(3)
    for c in range(3):
        if min(qp[-1, c] - qp[0, c], qo[-1, c] - qo[0, c]) >= MIN_SPREAD:
            x, y = qp[:, c] - qp[:, c].mean(), qo[:, c] - qo[:, c].mean()
            gain[c] = (x @ y) / (x @ x)  # least-squares slope of the original's quantiles on the prediction's
    gain = np.clip(gain, *GAIN_LIMITS)
    offset = np.clip(qo.mean(axis=0) - gain * qp.mean(axis=0), -MAX_OFFSET, MAX_OFFSET)
    return gain, offset


def quantiles(pixels: np.ndarray) -> np.ndarray:
    """(len(QUANTILES), 3) float: each channel's QUANTILES percentiles of uint8 pixels, from a histogram (a
    tenth of the cost of sorting; the lower level where a percentile falls between two)."""
    ranks = np.asarray(QUANTILES) / 100 * (len(pixels) - 1)
    counts = np.cumsum([np.bincount(pixels[:, c], minlength=256) for c in range(3)], axis=1)
    return np.stack([np.searchsorted(counts[c], ranks, side="right") for c in range(3)], axis=1).astype(np.float64)


def limited(gain: np.ndarray, offset: np.ndarray, predicted: np.ndarray, original: np.ndarray) -> Correction:
    """The correction with each channel that would not bring this frame's ring closer to the original reset."""
    gain, offset = gain.copy(), offset.copy()
    before = np.abs(predicted.astype(np.int16) - original).mean(axis=0)
    after = np.abs(Correction(tuple(gain), tuple(offset)).apply(predicted[None])[0].astype(np.int16) - original)
    worse = after.mean(axis=0) >= before
    gain[worse], offset[worse] = 1.0, 0.0
    return Correction(tuple(gain.tolist()), tuple(offset.tolist()))


class ColourMatcher:
    """One render's colour match: original rings kept by frame number, fits smoothed in output order."""

    def __init__(self, smoothing: float = SMOOTHING):
        self.smoothing = smoothing
        self.references: dict[int, np.ndarray] = {}
        self.gain: np.ndarray | None = None
        self.offset: np.ndarray | None = None

    def remember(self, number: int, c328: np.ndarray) -> None:
        """Keep output frame ``number``'s original ring, from its 328 crop (the prepare thread, any order)."""
        self.references[number] = ring_pixels(c328[ROI, ROI])

    def correction(self, number: int, prediction: np.ndarray) -> Correction | None:
        """The correction for output frame ``number`` (call in frame order); None when it changes nothing."""
        original = self.references.pop(number)
        predicted = ring_pixels(prediction)
        gain, offset = fit(predicted, original)
        if self.gain is None:
            self.gain, self.offset = gain, offset
        else:
            self.gain = self.gain + self.smoothing * (gain - self.gain)
            self.offset = self.offset + self.smoothing * (offset - self.offset)
        correction = limited(self.gain, self.offset, predicted, original)
        return None if correction.is_identity else correction
