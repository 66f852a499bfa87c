"""Compositing workers: paste predictions into frames in a process pool, exchanging pixels via shared memory.

Each ring slot holds one 320x320 prediction going in and one finished I420 frame coming out (which the encoder
process reads from the same slot), so only small task tuples are pickled. Workers open the package's frames store
themselves (it pickles as its file paths): an npy store is memory-mapped, a JPEG store decoded per frame. A worker
that dies surfaces as BrokenProcessPool on its future, never as a hang.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from lipsync_render.errors import RenderError
from lipsync_render.media.colour import BT709Converter
from lipsync_render.package.frame_store import FrameStore
from lipsync_render.rendering.child_process import helper_start_failure, start_as_helper
from lipsync_render.rendering.colour_match import Correction
from lipsync_render.rendering.frame_ring import RingLayout
from lipsync_render.rendering.geometry import composite_frame, cross_fade
from lipsync_render.rendering.shared_ring import attach_ring, create_ring, sweep_rings, unlink_ring


@dataclass(frozen=True)
class FrameTask:
    """How one frame is finished: the feather width of its seam (0: hard), how far it fades to the package
    frame (0: the composited prediction, 1: the untouched package frame, which needs no prediction) and the colour
    correction of its prediction (``--colour-match``; None: as the model made it)."""

    feather: int = 0
    still_weight: float = 0.0
    colour: Correction | None = None


@dataclass(frozen=True)
class FrameOutput:
    """Where composited frames also go as images (``--frames-dir``)."""

    directory: Path | None = None
    image_format: str = "jpg"
    jpeg_quality: int = 75

    def write(self, number: int, frame: np.ndarray) -> None:
        if self.directory is None:
            return
        params = [cv2.IMWRITE_JPEG_QUALITY, self.jpeg_quality] if self.image_format == "jpg" else []
        path = self.directory / f"{number:06d}.{self.image_format}"
        if not cv2.imwrite(str(path), frame, params):
            raise OSError(f"could not write {path}")


class _WorkerState:
    """What a compositing process holds: the ring views and the package frames."""

    def __init__(self, ring_name: str | None, layout: RingLayout, frames: FrameStore, ring=None):
        self.shm = attach_ring(ring_name) if ring_name else None
        self.predictions, self.i420 = layout.views(self.shm.buf if self.shm else ring)
        self.frames = frames
        self.scratch = np.empty(frames.shape[1:], np.uint8)
        self.decoded = np.empty(frames.shape[1:], np.uint8)
        self.corrected = np.empty(self.predictions.shape[1:], np.uint8)
        height, width = frames.shape[1:3]
        self.converter = BT709Converter(width, height, layout.width, layout.height)

    def composite(
        self, slot: int, frame_index: int, rect: tuple, number: int, output: FrameOutput, task: FrameTask
    ) -> float:
        """Composite one frame into the slot's I420 area; returns the seconds it took."""
        start = time.perf_counter()
        still = self.frames.read(frame_index, out=self.decoded)
        if task.still_weight >= 1:
            frame = still
        else:
            prediction = self.predictions[slot]
            if task.colour is not None:
                prediction = task.colour.apply(prediction, out=self.corrected)
            frame = composite_frame(still, rect, prediction, out=self.scratch, feather=task.feather)
            if task.still_weight > 0:
                frame = cross_fade(frame, still, task.still_weight, out=self.scratch)
        frame = self.converter.fit(frame)
        self.converter.convert(frame, out=self.i420[slot])
        output.write(number, frame)
        return time.perf_counter() - start


_state: _WorkerState | None = None


def _init_worker(ring_name: str, layout: RingLayout, frames: FrameStore) -> None:
    global _state
    start_as_helper(lambda: unlink_ring(ring_name))  # the ring goes with the last process that knows it
    cv2.setNumThreads(1)
    _state = _WorkerState(ring_name, layout, frames)


def _composite_in_worker(
    slot: int, frame_index: int, rect: tuple, number: int, output: FrameOutput, task: FrameTask
) -> float:
    return _state.composite(slot, frame_index, rect, number, output, task)


class CompositingPoolBroken(RenderError):
    """A compositing worker process died mid-render; the owner restarts the pool before the next render."""


class CompositingPool:
    """Composites frames in ``workers`` processes (0: in the calling thread) through a shared-memory ring; the
    finished frames have the output size (``width`` x ``height``), to which the package's frames are scaled."""

    def __init__(self, frames: FrameStore, width: int, height: int, slots: int, workers: int = 1):
        self.layout = RingLayout(slots, width, height)
        self.workers = workers
        sweep_rings()  # what killed renders on this machine left behind
        self.shm = create_ring(slots * self.layout.slot_bytes)
        self.predictions, _ = self.layout.views(self.shm.buf)  # the encoder process reads the frames
        self.frames = frames
        self.executor = None
        self.local = None
        self.starting = []
        if workers > 0:
            self._start_workers()
        else:
            self.local = _WorkerState(None, self.layout, frames, ring=self.shm.buf)

    def _start_workers(self) -> None:
        context = multiprocessing.get_context("spawn")  # never fork a process that runs ORT threads
        self.executor = ProcessPoolExecutor(
            self.workers,
            mp_context=context,
            initializer=_init_worker,
            initargs=(self.shm.name, self.layout, self.frames),
        )
        self.starting = [self.executor.submit(os.getpid) for _ in range(self.workers)]  # spawn now, in background

    def restart(self) -> None:
        """Replace a pool that lost a worker (the ring stays); the next render then works again."""
        if self.executor is not None:
            self.executor.shutdown(wait=False, cancel_futures=True)
            self._start_workers()
            self.wait_ready()

    def wait_ready(self) -> None:
        """Block until every worker process is up (they start in the background)."""
        try:
            for future in self.starting:
                future.result()
        except BrokenProcessPool:
            raise RenderError(helper_start_failure("compositing worker", None)) from None

    def submit(
        self,
        slot: int,
        prediction: np.ndarray | None,
        frame_index: int,
        rect,
        number: int,
        output: FrameOutput = FrameOutput(),
        task: FrameTask = FrameTask(),
    ) -> Future:
        """Queue one frame: the prediction (None for a still frame) goes into the slot, the finished I420 frame
        comes back there."""
        if prediction is not None:
            self.predictions[slot] = prediction
        rect = tuple(int(v) for v in rect)
        if self.executor is not None:
            return self.executor.submit(_composite_in_worker, slot, frame_index, rect, number, output, task)
        future: Future = Future()
        try:
            future.set_result(self.local.composite(slot, frame_index, rect, number, output, task))
        except Exception as exc:
            future.set_exception(exc)
        return future

    def close(self) -> None:
        """Stop the workers and free the ring."""
        if self.executor is not None:
            self.executor.shutdown(wait=True, cancel_futures=True)
            self.executor = None
        self.predictions = None
        if self.local is not None:
            self.local.predictions = self.local.i420 = None
            self.local = None
        unlink_ring(self.shm.name)
        try:
            self.shm.close()
        except BufferError:
            pass
