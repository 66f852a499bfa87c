"""One render through the overlapped stages: audio -> features -> UNet -> compositing -> H.264/AAC MP4.

Stages run as threads joined by bounded queues, so the slowest stage sets the pace and memory stays flat
whatever the audio length. Frames travel through one shared-memory ring of slots: the compositing pool writes
finished I420 frames into it and the video encoder process reads them from it, so no frame is ever pickled::

    features thread   mel + AVE audio encoder in chunks -> FeatureStream (rows become ready)
    prepare thread    silence, crops, masks, audio blocks -> queue of batches (idle frames need no UNet input)
    inference thread  UNet per batch (low priority)     -> queue of predictions
    dispatch thread   predictions into ring slots       -> queue of compositing futures, in frame order
                      (an idle frame gets a slot but no prediction: the worker copies the package frame)
    calling thread    waits for each future             -> slot to the video encoder process (H.264 + AAC)
    collect thread    video encoder replies             -> slots back to the free list, progress
"""

from __future__ import annotations

import itertools
import logging
import os
import queue
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from lipsync_render.contract import CROP_INPUT_SHAPE, UNET_UINT8, VISUAL_INPUT_SHAPE, require_finite
from lipsync_render.errors import LipsyncError, PackageError, RenderError
from lipsync_render.media import features
from lipsync_render.media.audio import AudioStream
from lipsync_render.media.mel import mel_chunks, mel_frame_count
from lipsync_render.media.video import software_encoder
from lipsync_render.model_input import crop_328, prediction_to_uint8, visual_input
from lipsync_render.option_values import feather_pixels
from lipsync_render.options import RenderOptions
from lipsync_render.paths import replaceable_problem
from lipsync_render.rendering import cancellation, faces, silence
from lipsync_render.rendering.batches import Batch, plan_batches
from lipsync_render.rendering.cancellation import POLL_SECONDS, Cancelled
from lipsync_render.rendering.colour_match import ColourMatcher
from lipsync_render.rendering.compositing_pool import CompositingPoolBroken, FrameOutput, FrameTask
from lipsync_render.rendering.encoding_process import video_target
from lipsync_render.rendering.feature_stream import FeatureStream, ring_rows
from lipsync_render.rendering.frame_order import frame_schedule
from lipsync_render.rendering.partials import partial_path
from lipsync_render.rendering.result import RenderResult
from lipsync_render.rendering.scheduling import leave_signals_to_the_main_thread, lower_thread_priority

if TYPE_CHECKING:
    from lipsync_render.planning.session_plan import SessionPlan
    from lipsync_render.rendering.resources import RenderResources

log = logging.getLogger(__name__)


class RenderRun:
    """One render: the stage threads, their queues, timings and cleanup."""

    def __init__(
        self,
        resources: RenderResources,
        plan: SessionPlan,
        options: RenderOptions,
        audio: AudioStream,
        output_path: Path,
    ):
        self.resources = resources
        self.plan = plan
        self.options = options
        self.package = resources.package
        self.unet, self.pool, self.encoder_process = resources.unet, resources.pool, resources.encoder_process
        self.audio = audio
        self.audio_path, self.output_path = audio.path, output_path
        self.on_progress: Callable[[int, int], None] | None = None
        self.frame_count = features.frame_count_for_audio(audio.sample_count)
        self.schedule = frame_schedule(
            self.frame_count, self.package.frame_count, self.options.start_frame, self.options.loop
        )
        self.first_frame_at = None
        self.cancel = threading.Event()
        self.failure: BaseException | None = None
        self.seconds: dict[str, float] = defaultdict(float)
        self.cpu_seconds: dict[str, float] = {}
        depth = 2
        self.batches: queue.Queue = queue.Queue(depth)
        self.predictions: queue.Queue = queue.Queue(depth)
        self.pending: queue.Queue = queue.Queue()  # bounded by the ring's free slots
        self.free_slots: queue.Queue[int] = queue.Queue()
        for slot in range(resources.slots):
            self.free_slots.put(slot)
        self.run_id = 0
        self.frames_done = 0
        self.idle_frames = 0
        self.feather = feather_pixels(options.blend)
        self.colour = ColourMatcher() if options.colour_match == "auto" else None
        self.frame_output = FrameOutput(options.frames_dir, options.frames_format, options.jpeg_quality)
        self.stream = self._feature_stream()

    def execute(
        self, run_id: int, started: float | None = None, on_progress: Callable[[int, int], None] | None = None
    ) -> RenderResult:
        """Run every stage to the finished MP4; ``run_id`` tells this render's messages to the encoder process
        apart, ``started`` is when the render call began, ``on_progress(done, total)`` follows encoded frames."""
        start = time.perf_counter() if started is None else started
        self.run_id, self.on_progress = run_id, on_progress
        if self.frame_output.directory is not None:
            self.frame_output.directory.mkdir(parents=True, exist_ok=True)
        partial = partial_path(self.output_path)
        stages = {"prepare": self._prepare, "infer": self._infer, "dispatch": self._dispatch, "collect": self._collect}
        if self.options.features == "audio":
            stages = {"features": self._extract_features, **stages}
        threads = [
            threading.Thread(target=self._guard, args=(name, stage), name=name, daemon=True)
            for name, stage in stages.items()
        ]
        encoder, collector = self.encoder_process, threads[-1]
        plan = self.plan
        target = video_target(partial, plan, self.options, self.package.fps, self.audio)
        self.video_encoder = target.encoder
        try:
            encoder.open(self.run_id, target)
            for thread in threads:
                thread.start()
            self._on_thread_cpu("send", self._send_frames)
            encoder.finish(self.run_id)
            collector.join()
            if self.failure is not None:
                raise self.failure
            problem = replaceable_problem(self.output_path)  # it may have changed while the render ran
            if problem:
                raise RenderError(problem)
            os.replace(partial, self.output_path)
        except BaseException as exc:
            self.cancel.set()
            if encoder.alive:
                encoder.abort(self.run_id)
            for thread in threads:
                thread.join(timeout=30 if thread is collector else 10)
            partial.unlink(missing_ok=True)
            self._drain_pending()
            if isinstance(exc, Cancelled) and self.failure is not None:
                exc = self.failure
            raise _as_user_error(exc, self.output_path) from None
        for thread in threads:
            thread.join()
        total = time.perf_counter() - start
        self.seconds["total"] = total
        return RenderResult(
            input=str(self.audio_path),
            output=str(self.output_path),
            frames=self.frame_count,
            duration=self.audio.seconds,
            fps=self.frame_count / total if total > 0 else 0.0,
            first_frame_seconds=round(self.first_frame_at - start, 4),
            seconds={k: round(v, 4) for k, v in self.seconds.items()},
            cpu_seconds={k: round(v, 4) for k, v in self.cpu_seconds.items()},
            backend=plan.backend,
            precision=plan.precision,
            precision_choice=choice.describe() if (choice := plan.precision_choice) else None,
            video_encoder=self.video_encoder,
            providers=self.unet.providers,
            idle_frames=self.idle_frames,
            plan=plan.to_dict(),
        )

    def _feature_stream(self) -> FeatureStream:
        """The feature table source: the package's pre-extracted features, or the audio (encoded as it streams)."""
        if self.options.features == "package":
            if self.package.features is None:
                raise PackageError(
                    f"Package '{self.package.name}' has no pre-extracted features (aud_ave.npy) for --features package."
                )
            return FeatureStream.from_table(np.asarray(self.package.features))
        table_rows = features.encoder_window_count(mel_frame_count(self.audio.sample_count)) + 2
        return FeatureStream(table_rows, ring_rows(self.plan.batch_size))

    def _on_thread_cpu(self, name: str, stage: Callable[[], None]) -> None:
        """Run a stage, adding the CPU seconds its thread spent to ``cpu_seconds[name]``."""
        start = time.thread_time()
        try:
            stage()
        finally:
            self.cpu_seconds[name] = self.cpu_seconds.get(name, 0.0) + time.thread_time() - start

    def _guard(self, name: str, stage: Callable[[], None]) -> None:
        """Run a stage; the first failure cancels every other stage."""
        leave_signals_to_the_main_thread()
        try:
            self._on_thread_cpu(name, stage)
        except Cancelled:
            pass
        except BaseException as exc:
            if self.failure is None:
                self.failure = exc
            self.cancel.set()

    def _put(self, q: queue.Queue, item) -> None:
        cancellation.put(q, item, self.cancel)

    def _get(self, q: queue.Queue):
        return cancellation.get(q, self.cancel)

    def _batches(self) -> Iterator[Batch]:
        """Runs of output frames per UNet batch. On the CPU the first batch is a single frame, so the first
        frame is encoded after one UNet run rather than a whole batch (cold start); GPUs keep one shape."""
        size = self.plan.batch_size
        first = size if self.unet.constant_shape else 1
        if self.options.silence == "idle":  # the prepare thread reads the audio a second time, for its levels
            weights = silence.stream_still_weights(self.audio.blocks(), self.frame_count)
        else:
            weights = itertools.repeat(0.0)
        weights = faces.still_weights(weights, self.schedule, self.package.faces)  # no face: the package frame
        return plan_batches(self.frame_count, weights, size, first)

    def _extract_features(self) -> None:
        """Decode, mel and audio encoder, all streamed: the features thread's whole job."""
        tick = time.perf_counter()
        mel_frames = mel_frame_count(self.audio.sample_count)
        chunks = mel_chunks(self.audio.blocks(), self.audio.sample_count)
        self.stream.fill(chunks, mel_frames, self.resources.audio_encoder, self.cancel)
        self.seconds["audio"] += time.perf_counter() - tick

    def _prepare(self) -> None:
        """The UNet's inputs per batch: uint8 328 crops for a uint8 UNet (no float work here), else float inputs."""
        rects, frames = self.package.rects, self.package.frames
        uint8 = self.unet.contract is UNET_UINT8
        shape, dtype = (CROP_INPUT_SHAPE, np.uint8) if uint8 else (VISUAL_INPUT_SHAPE, np.float32)
        for batch in self._batches():
            rendered = batch.rendered
            audio = self.stream.blocks(rendered, self.cancel)
            tick = time.perf_counter()
            visual = np.empty((len(rendered), *shape), dtype)
            for row, (number, index) in enumerate(zip(rendered.tolist(), self.schedule[rendered])):
                crop = crop_328(*frames.rect_pixels(index, rects[index]), out=visual[row] if uint8 else None)
                if self.colour is not None:
                    self.colour.remember(number, crop)
                if not uint8:
                    visual_input(crop, out=visual[row])
            self.seconds["prepare"] += time.perf_counter() - tick
            self._put(self.batches, (batch, visual, audio))
        self.stream.stop_reading()
        self._put(self.batches, None)

    def _infer(self) -> None:
        lower_thread_priority()
        while (item := self._get(self.batches)) is not None:
            batch, visual, audio = item
            predictions = None
            if len(visual):
                tick = time.perf_counter()
                unet = self.unet
                if unet.contract is UNET_UINT8:
                    predictions = unet.run(visual, audio)  # checks its own output for NaN
                else:
                    output = require_finite(unet.run(visual, audio), unet.contract, unet.path)
                    predictions = prediction_to_uint8(output)
                self.seconds["inference"] += time.perf_counter() - tick
            self._put(self.predictions, (batch, predictions))
        self._put(self.predictions, None)

    def _dispatch(self) -> None:
        rects = self.package.rects
        while (item := self._get(self.predictions)) is not None:
            batch, predictions = item
            rendered = iter(() if predictions is None else predictions)
            for number, weight in zip(batch.numbers, batch.still_weights.tolist()):
                slot = self._get(self.free_slots)
                index = int(self.schedule[number])
                prediction = None if weight >= 1 else next(rendered)
                self.idle_frames += prediction is None
                colour = self.colour.correction(int(number), prediction) if self.colour and weight < 1 else None
                task = FrameTask(self.feather, weight, colour)
                future = self.pool.submit(slot, prediction, index, rects[index], int(number), self.frame_output, task)
                self.pending.put((slot, future))
        self.pending.put(None)

    def _send_frames(self) -> None:
        """Hand composited frames to the encoder process strictly in frame order."""
        sent = 0
        while (item := self._get(self.pending)) is not None:
            slot, future = item
            self.seconds["compositing"] += future.result()
            self.encoder_process.write(self.run_id, slot)
            sent += 1
        if sent != self.frame_count:
            raise RenderError(f"Rendered {sent} of {self.frame_count} frames.")

    def _collect(self) -> None:
        """Take the encoder's replies: released slots go back to the ring; ends when the file is finished
        or aborted (it keeps collecting after a failure elsewhere, so every slot comes back)."""
        while True:
            reply = self.encoder_process.reply(self.run_id, POLL_SECONDS)
            if reply is None:
                continue
            kind, value = reply
            if kind == "released":
                self.free_slots.put(value)
                self.frames_done += 1
                if self.first_frame_at is None:
                    self.first_frame_at = time.perf_counter()
                if self.on_progress is not None:
                    self.on_progress(self.frames_done, self.frame_count)
            elif kind == "finished":
                self.seconds["encoding"] += value
                return
            elif kind == "aborted":
                return
            elif kind == "warning":  # NVENC gave way to the software encoder for this file
                log.warning(value)
                self.video_encoder = software_encoder(self.video_encoder)
            elif kind == "error" and self.failure is None:
                self.failure = RenderError(value)
                self.cancel.set()

    def _drain_pending(self) -> None:
        """Give every slot of an aborted run back, once its worker is done with it."""
        while True:
            try:
                item = self.pending.get_nowait()
            except queue.Empty:
                return
            if item is None:
                continue
            slot, future = item
            try:
                future.result(timeout=30)
            except Exception:  # the run is already failing; the slot is what matters
                pass
            self.free_slots.put(slot)


def _as_user_error(exc: BaseException, output: Path) -> BaseException:
    """Keep user-facing errors and interrupts; describe a dead worker or a write failure in one sentence."""
    if isinstance(exc, (LipsyncError, KeyboardInterrupt)):
        return exc
    if isinstance(exc, BrokenProcessPool):  # raised by whichever of submit() or result() sees it first
        return CompositingPoolBroken(
            "A compositing worker process died (out of memory or killed); the render was stopped."
        )
    if isinstance(exc, OSError):
        return RenderError(f"Could not write {getattr(exc, 'filename', None) or output}: {exc.strerror or exc}.")
    return exc
