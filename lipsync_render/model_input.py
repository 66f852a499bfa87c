"""The model's input side of the face geometry (reference §5.3 and §6.1): the 328 crop, the UNet's visual input
with its mask, and the UNet output as uint8 pixels.

Frames are BGR uint8 throughout; the model sees BGR / 255, never RGB. Pasting the output back into the frame is
``rendering/geometry.py``'s job; the runtimes that take uint8 crops (``runtimes/ort/uint8_io.py``,
``runtimes/pytorch/networks.py``) build the same input on the device from the mask defined here.
"""

from __future__ import annotations

import cv2
import numpy as np

from lipsync_render.contract import CROP_SIZE, ROI, VISUAL_INPUT_SHAPE

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
