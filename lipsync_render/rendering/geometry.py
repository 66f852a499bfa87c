"""Face geometry (reference §5.3 and §6): model inputs from a frame, and pasting the output back.

All geometry lives here. Frames are BGR uint8 throughout; the model sees BGR / 255, never RGB.
"""

from __future__ import annotations

from functools import cache

import cv2
import numpy as np

from lipsync_render.contract import CROP_SIZE, ROI, ROI_SIZE, VISUAL_INPUT_SHAPE

MASK_ROWS = slice(5, 310)  # cv2.rectangle((5, 5, 310, 305)) filled: rows 5..309, cols 5..314
MASK_COLS = slice(5, 315)


def crop_328(frame: np.ndarray, rect, out: np.ndarray | None = None) -> np.ndarray:
    """The face crop resized to 328x328 with cubic interpolation (§5.3 steps 1-2), into ``out`` when given."""
    x1, y1, x2, y2 = (int(v) for v in rect)
    return cv2.resize(frame[y1:y2, x1:x2], (CROP_SIZE, CROP_SIZE), dst=out, interpolation=cv2.INTER_CUBIC)


def visual_input(c328: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """The UNet's visual input (6, 320, 320) float32: unmasked ROI then masked ROI, BGR / 255 (§5.3 steps 3-5)."""
    if out is None:
        out = np.empty(VISUAL_INPUT_SHAPE, dtype=np.float32)
    roi = c328[ROI, ROI].transpose(2, 0, 1)
    # Division, not multiplication by 1/255: bit-identical to the reference's `/ 255.0` in float32.
    np.divide(roi, np.float32(255), out=out[:3], dtype=np.float32)
    out[3:] = out[:3]
    out[3:, MASK_ROWS, MASK_COLS] = 0
    return out


def prediction_to_uint8(output: np.ndarray) -> np.ndarray:
    """UNet output (N, 3, 320, 320) in (0, 1) -> (N, 320, 320, 3) uint8, truncating like the reference (§6.1)."""
    return (output.transpose(0, 2, 3, 1) * 255).astype(np.uint8)


def paste_back(
    frame: np.ndarray,
    rect,
    c328: np.ndarray,
    prediction: np.ndarray,
    out: np.ndarray | None = None,
    feather: int = 0,
) -> np.ndarray:
    """Composite a uint8 prediction into a copy of the frame (§6 steps 2-4); the 328 crop keeps its 4-px border.

    ``feather`` > 0 blends the prediction into the crop over that many pixels at the model region's edges
    (:func:`feathered_roi`) instead of the reference's hard paste.
    """
    x1, y1, x2, y2 = (int(v) for v in rect)
    template = c328.copy()
    template[ROI, ROI] = prediction if feather == 0 else feathered_roi(c328[ROI, ROI], prediction, feather)
    face = cv2.resize(template, (x2 - x1, y2 - y1), interpolation=cv2.INTER_CUBIC)
    if out is None:
        out = frame.copy()
    else:
        out[...] = frame
    out[y1:y2, x1:x2] = face
    return out


def composite_frame(
    frame: np.ndarray, rect, prediction: np.ndarray, out: np.ndarray | None = None, feather: int = 0
) -> np.ndarray:
    """The finished frame for one prediction, recomputing the 328 crop from the frame."""
    return paste_back(frame, rect, crop_328(frame, rect), prediction, out, feather)


@cache
def feather_alpha(pixels: int) -> np.ndarray:
    """Weight of the prediction over the 320x320 model region, (320, 320, 1) float32: it rises linearly from
    0.5/pixels on the region's outermost pixels to 1 at ``pixels`` in from every edge, and is exactly 1 inside."""
    distance = np.minimum(np.arange(ROI_SIZE), np.arange(ROI_SIZE)[::-1])  # pixels to the nearest edge, 0 at it
    ramp = np.minimum(1.0, (distance + 0.5) / pixels).astype(np.float32)
    alpha = np.minimum(ramp[:, None], ramp[None, :])[..., None]
    alpha.flags.writeable = False
    return alpha


def feathered_roi(original: np.ndarray, prediction: np.ndarray, pixels: int) -> np.ndarray:
    """The prediction blended into the original model region over ``pixels`` at its edges, rounded to uint8;
    where the ramp is 1 the result is the prediction itself."""
    alpha = feather_alpha(pixels)
    blended = original + alpha * (prediction.astype(np.float32) - original)
    return np.rint(blended).astype(np.uint8)


def cross_fade(rendered: np.ndarray, still: np.ndarray, still_weight: float, out: np.ndarray) -> np.ndarray:
    """``rendered`` faded towards the untouched package frame ``still`` by ``still_weight`` (0..1), rounded."""
    return cv2.addWeighted(rendered, 1.0 - still_weight, still, still_weight, 0.0, dst=out)
