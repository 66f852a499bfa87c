"""The shared-memory ring of frame slots: a uint8 prediction going in, a finished I420 frame coming out."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lipsync_render.contract import ROI_SIZE

PREDICTION_PIXELS_SHAPE = (
    ROI_SIZE,
    ROI_SIZE,
    3,
)  # the uint8 HWC prediction as the paste-back takes it (the model's own
# output, contract.PREDICTION_SHAPE, is float CHW)


@dataclass(frozen=True)
class RingLayout:
    """Byte layout of the shared ring: per slot, a prediction then an I420 frame."""

    slots: int
    width: int
    height: int

    @property
    def prediction_bytes(self) -> int:
        return int(np.prod(PREDICTION_PIXELS_SHAPE))

    @property
    def frame_shape(self) -> tuple[int, int]:
        return (self.height * 3 // 2, self.width)

    @property
    def slot_bytes(self) -> int:
        return self.prediction_bytes + self.height * 3 // 2 * self.width

    def views(self, buffer) -> tuple[np.ndarray, np.ndarray]:
        """(predictions [slots,320,320,3], frames [slots,H*3/2,W]) as numpy views of the ring."""
        ring = np.ndarray((self.slots, self.slot_bytes), np.uint8, buffer)
        predictions = ring[:, : self.prediction_bytes].reshape(self.slots, *PREDICTION_PIXELS_SHAPE)
        frames = ring[:, self.prediction_bytes :].reshape(self.slots, *self.frame_shape)
        return predictions, frames
