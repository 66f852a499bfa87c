"""Face geometry (reference §6): pasting the UNet's output back into the frame, the feather ramp and the cross-fade.

The model's inputs from a frame (the 328 crop, the masked visual input, the output as uint8) are
``model_input.py``'s, so the runtimes can share them without importing rendering. Frames are BGR uint8 throughout.
"""

from __future__ import annotations

from functools import cache

import cv2
import numpy as np

from lipsync_render.contract import ROI, ROI_SIZE
from lipsync_render.model_input import crop_328


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
