"""Writing a package's frames store, frame by frame, into the package's staging directory."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from lipsync_render.errors import PackageError
from lipsync_render.package.frame_store import FILE_NAMES, tile_boxes
from lipsync_render.store_choice import JPEG, StoreChoice


class FrameWriter:
    """Takes ``count`` frames of one size with :meth:`add`; :meth:`finish` returns the files by role."""

    def __init__(self, choice: StoreChoice, directory: Path, count: int):
        self.choice, self.directory, self.count = choice, Path(directory), count
        self.files = FILE_NAMES[choice.codec]
        self.written = 0
        self.shape: tuple[int, int, int] | None = None

    def add(self, frame: np.ndarray) -> None:
        if self.shape is None:
            self.shape = (*frame.shape[:2], 3)
            self._open(*self.shape[:2])
        if self.written >= self.count or frame.shape != self.shape or frame.dtype != np.uint8:
            raise PackageError(
                f"Frame {self.written} is {frame.dtype} {frame.shape}; expected {self.count} uint8 frames of "
                f"{self.shape}."
            )
        self._put(frame)
        self.written += 1

    def finish(self) -> dict[str, str]:
        if self.shape is None or self.written != self.count:
            raise PackageError(f"Got {self.written} frames for a package of {self.count}.")
        self.close()
        return dict(self.files)

    def _open(self, height: int, width: int) -> None:
        raise NotImplementedError

    def _put(self, frame: np.ndarray) -> None:
        raise NotImplementedError

    def close(self) -> None:
        """Flush and release the store's files (also after a failure)."""


class NpyFrameWriter(FrameWriter):
    """Frames into one memory-mapped ``.npy``."""

    array = None

    def _open(self, height: int, width: int) -> None:
        shape = (self.count, height, width, 3)
        path = self.directory / self.files["frames"]
        self.array = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=shape)

    def _put(self, frame: np.ndarray) -> None:
        self.array[self.written] = frame

    def close(self) -> None:
        if self.array is not None:
            self.array.flush()
            self.array = None


class JpegFrameWriter(FrameWriter):
    """Each frame as JPEG tiles appended to one data file; the offsets go to the index at the end."""

    data = None

    def _open(self, height: int, width: int) -> None:
        self.boxes = tile_boxes(width, height, self.choice.tile)
        self.offsets = np.zeros(self.count * len(self.boxes) + 1, np.int64)
        self.params = [cv2.IMWRITE_JPEG_QUALITY, self.choice.quality, cv2.IMWRITE_JPEG_OPTIMIZE, 1]
        self.data = open(self.directory / self.files["frames"], "wb")  # noqa: SIM115 - open across add() calls

    def _put(self, frame: np.ndarray) -> None:
        k = self.written * len(self.boxes)
        for t, (y0, y1, x0, x1) in enumerate(self.boxes):
            ok, code = cv2.imencode(".jpg", np.ascontiguousarray(frame[y0:y1, x0:x1]), self.params)
            if not ok:
                raise PackageError(f"Frame {self.written} could not be encoded as JPEG.")
            self.data.write(code.tobytes())
            self.offsets[k + t + 1] = self.offsets[k + t] + len(code)

    def close(self) -> None:
        if self.data is not None:
            self.data.close()
            self.data = None
            np.save(self.directory / self.files["frames_index"], self.offsets)


def frame_writer(choice: StoreChoice, directory: Path, count: int) -> FrameWriter:
    """The writer for ``choice``'s store."""
    return (JpegFrameWriter if choice.codec == JPEG else NpyFrameWriter)(choice, directory, count)
