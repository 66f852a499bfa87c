"""The render pipeline: audio -> features -> UNet -> compositing -> H.264/AAC MP4, all stages overlapped.

Stages run as threads joined by bounded queues, so the slowest stage sets the pace and memory stays flat
whatever the audio length. Frames travel through one shared-memory ring of slots: the compositing pool writes
finished I420 frames into it and the encoder process reads them from it, so no frame is ever pickled::

    features thread   mel + AVE encoder in chunks   -> FeatureStream (rows become ready)
    prepare thread    crops, masks, audio blocks    -> queue of batches
    inference thread  UNet per batch (low priority) -> queue of predictions
    dispatch thread   predictions into ring slots   -> queue of compositing futures, in frame order
    calling thread    waits for each future         -> slot to the encoder process (H.264 + AAC, muxed)
    collect thread    encoder replies               -> slots back to the free list, progress
"""

from __future__ import annotations

import os
import queue
import threading
import time
from collections import defaultdict
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from lipsync_render import features as feats
from lipsync_render.audio import SAMPLE_RATE, load_audio, melspectrogram
from lipsync_render.compositing import crop_328, prediction_to_uint8, visual_input
from lipsync_render.compositor import CompositorPool, FrameOutput
from lipsync_render.encoder import EncoderProcess, EncodeSettings
from lipsync_render.errors import LipsyncError, OptionError, PackageError, RenderError
from lipsync_render.inference import (UNetRunner, check_precision, default_threads, execution_device, make_session,
                                      planned_device)
from lipsync_render.package import Package, load_package
from lipsync_render.precision import PRECISIONS, engine_cache_dir, unet_for_precision
from lipsync_render.scheduling import call_at_low_priority, lower_thread_priority, quick_gil_handoff
from lipsync_render.video import select_video_encoder

STAGES = ("audio", "prepare", "inference", "compositing", "encoding")
POLL_SECONDS = 0.1


@dataclass
class RenderOptions:
    """How to render; the CLI flags map one to one onto these."""

    batch_size: int | None = None  # None: 25 on a GPU (the reference's batch), 1 on the CPU, 4 for int8 (resolve)
    workers: int | None = None  # None: no separate process on the CPU, up to 4 on a GPU machine
    device: str = "auto"
    threads: int = 0
    start_frame: int = 0
    loop: str = "pingpong"
    crf: int = 18
    preset: str = "veryfast"
    frames_dir: Path | None = None
    frames_format: str = "jpg"
    jpeg_quality: int = 75
    features: str = "audio"  # or "package": drive the UNet from the package's pre-extracted features
    precision: str = "fp32"  # fp16 (GPU) or int8 (CPU, static QDQ quantisation cached beside the package)
    cuda_graph: bool = False  # CUDA only: capture the UNet once and replay it
    encoder: str = "auto"  # video encoder: auto (h264_nvenc when it really opens, else libx264), libx264, nvenc
    encoder_threads: int | None = None  # libx264 threads; None: 1 on the CPU, x264's own choice with a GPU

    def check(self) -> None:
        if self.batch_size is not None and self.batch_size < 1:
            raise OptionError(f"Batch size must be at least 1 (got {self.batch_size}).")
        if self.workers is not None and self.workers < 0:
            raise OptionError(f"Workers must be 0 or more (got {self.workers}).")
        if self.loop not in ("pingpong", "forward"):
            raise OptionError(f"Loop mode must be 'pingpong' or 'forward' (got '{self.loop}').")
        if self.frames_format not in ("jpg", "png"):
            raise OptionError(f"Frame format must be 'jpg' or 'png' (got '{self.frames_format}').")
        if self.features not in ("audio", "package"):
            raise OptionError(f"Features must come from 'audio' or 'package' (got '{self.features}').")
        if self.precision not in PRECISIONS:
            raise OptionError(f"Precision must be one of {', '.join(PRECISIONS)} (got '{self.precision}').")
        if self.start_frame < 0:
            raise OptionError(f"Start frame must be 0 or more (got {self.start_frame}).")

    def resolve(self, device_kind: str) -> "RenderOptions":
        """A copy with the automatic settings filled in for a device kind ('cpu', 'cuda', 'tensorrt').

        On the CPU the UNet's cost per frame is flat from batch 1 to 25 while its activations grow with the
        batch (7 GB peak at 25), and the other stages are light: one-frame batches and in-process compositing
        measured fastest there (benchmarks/RESULTS.md), and one x264 thread encodes 720p with about 30% less CPU
        time per frame than x264's own threading, leaving the cores to the UNet. A GPU wants large constant
        batches; the CPU stages then set the pace, so they get processes and x264 its threads.
        """
        on_cpu = device_kind == "cpu"
        cpu_batch = 4 if self.precision == "int8" else 1  # int8 kernels gain from batching (measured +20%)
        batch_size = self.batch_size or (cpu_batch if on_cpu else 25)
        workers = self.workers if self.workers is not None else (0 if on_cpu else min(4, max(1, (os.cpu_count() or 2) // 2)))
        encoder_threads = self.encoder_threads if self.encoder_threads is not None else (1 if on_cpu else 0)
        return replace(self, batch_size=batch_size, workers=workers, encoder_threads=encoder_threads)


@dataclass
class RenderResult:
    """What one render produced; ``--json`` prints it as one object per file."""

    input: str
    output: str | None
    status: str = "ok"
    error: str | None = None
    frames: int = 0
    duration: float = 0.0
    fps: float = 0.0
    first_frame_seconds: float = 0.0  # from the render call to the first encoded frame
    seconds: dict[str, float] = field(default_factory=dict)
    providers: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def frame_schedule(count: int, frame_total: int, start: int = 0, loop: str = "pingpong") -> np.ndarray:
    """Package frame index for each output frame.

    pingpong follows the reference (§7): p = (i + 1 + start) mod 2L, idx = p if p <= L else 2L - p with
    L = frame_total - 1, i.e. 1, 2, ..., L, L-1, ..., 0, 1, ... for start 0; ``start`` shifts the phase.
    forward loops start, start+1, ..., frame_total-1, 0, ...
    """
    i = np.arange(count, dtype=np.int64)
    if loop == "forward" or frame_total == 1:
        return (i + start) % frame_total
    last = frame_total - 1
    p = (i + 1 + start) % (2 * last)
    return np.where(p <= last, p, 2 * last - p)


class FeatureStream:
    """The per-frame feature table (N_enc + 2 rows), filled in chunks by a thread; readers wait for rows."""

    def __init__(self, table_rows: int):
        self.table = np.zeros((table_rows, 512), np.float32)
        self.ready_rows = 0
        self.condition = threading.Condition()

    @classmethod
    def from_table(cls, table: np.ndarray) -> "FeatureStream":
        stream = cls(len(table))
        stream.table[:] = table
        stream.ready_rows = len(table)
        return stream

    def fill(self, mel: np.ndarray, session, cancel: threading.Event, chunk: int = 64) -> None:
        """Encode all windows of ``mel`` chunk by chunk, publishing rows as they become final."""
        count = len(self.table) - 2
        for first in range(0, count, chunk):
            if cancel.is_set():
                return
            last = min(count, first + chunk)
            encoded = feats.encode(session, feats.encoder_windows(mel, first, last))
            with self.condition:
                self.table[first + 1:last + 1] = encoded
                if first == 0:
                    self.table[0] = encoded[0]
                if last == count:
                    self.table[-1] = encoded[-1]
                self.ready_rows = len(self.table) if last == count else last + 1
                self.condition.notify_all()

    def blocks(self, frame_numbers: np.ndarray, cancel: threading.Event) -> np.ndarray:
        """Audio inputs [n, 32, 16, 16] for output frames, once the rows they read are final."""
        needed = min(len(self.table), int(frame_numbers.max()) + 8)
        with self.condition:
            while self.ready_rows < needed:
                if cancel.is_set():
                    raise _Cancelled()
                self.condition.wait(POLL_SECONDS)
        return feats.frame_blocks(self.table, frame_numbers)


class _Cancelled(Exception):
    """Internal: another stage failed or the user interrupted."""


class Renderer:
    """Holds a package, its sessions and the compositing pool; renders any number of audio files."""

    def __init__(self, model: str | os.PathLike | Package, options: RenderOptions | None = None):
        (options or RenderOptions()).check()
        self.options = (options or RenderOptions()).resolve(planned_device(options.device if options else "auto"))
        start = time.perf_counter()
        self.package = model if isinstance(model, Package) else load_package(model)
        self.slots = max(16, 2 * self.options.batch_size + 2 * self.options.workers + 4)  # covers IPC latency
        self.pool = CompositorPool(self.package.frames_path, self.package.width, self.package.height, self.slots,
                                   self.options.workers)  # worker processes start while the sessions load
        self.encoder = EncoderProcess(self.pool.shm.name, self.pool.layout)
        self.renders = 0
        self.pool_broken = False
        try:
            self._load_sessions()
            self.pool.wait_ready()
        except BaseException:
            self.close()
            raise
        self.load_seconds = time.perf_counter() - start

    def _load_sessions(self) -> None:
        """The UNet (in the requested precision) and encoder sessions, the video encoder choice, GPU warm-up."""
        threads = self.options.threads or default_threads()
        unet_path = unet_for_precision(self.package, self.options.precision)
        self.unet_session = call_at_low_priority(
            make_session, unet_path, self.options.device, threads,
            engine_cache_dir(self.package, unet_path, self.options.device), self.options.cuda_graph)
        check_precision(self.options.precision, self.unet_session)
        self.video_codec = select_video_encoder(self.options.encoder)
        self.encoder_session = make_session(self.package.encoder_path, self.options.device, 1)
        self.unet = UNetRunner(self.unet_session, self.options.batch_size)
        if execution_device(self.unet_session) != "cpu":
            self.unet.warm_up()  # engine builds, cuDNN autotuning and graph capture happen here, not mid-render

    @property
    def providers(self) -> list[str]:
        return self.unet_session.get_providers()

    def close(self) -> None:
        self.encoder.close()
        self.pool.close()

    def __enter__(self) -> "Renderer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def render(self, audio_path: str | os.PathLike, output_path: str | os.PathLike,
               on_progress: Callable[[int, int], None] | None = None,
               frames_dir: str | os.PathLike | None = None) -> RenderResult:
        """Render one audio file to an MP4 (written to a temporary name, renamed when complete).

        ``frames_dir`` (default: the options') also receives every composited frame as an image.
        """
        started = time.perf_counter()
        audio_path, output_path = Path(audio_path), Path(output_path)
        check_output_path(output_path)
        frames_dir = Path(frames_dir) if frames_dir is not None else self.options.frames_dir
        if not self.encoder.alive:  # a previous render lost it
            self.encoder = EncoderProcess(self.pool.shm.name, self.pool.layout)
        if self.pool_broken:
            self.pool.restart()
            self.pool_broken = False
        self.renders += 1
        run = _Run(self, load_audio(audio_path), audio_path, output_path, on_progress, frames_dir, started)
        with quick_gil_handoff():
            return run.execute()


def check_output_path(path: Path) -> None:
    """Fail early when the output cannot be written."""
    parent = path.parent
    if not parent.is_dir():
        raise RenderError(f"Output directory {parent} does not exist.")
    if not os.access(parent, os.W_OK):
        raise RenderError(f"Output directory {parent} is not writable.")
    if path.is_dir():
        raise RenderError(f"Output path {path} is a directory.")


class _Run:
    """One render: the stage threads, their queues, timings and cleanup."""

    def __init__(self, renderer: Renderer, samples: np.ndarray, audio_path: Path, output_path: Path,
                 on_progress: Callable[[int, int], None] | None, frames_dir: Path | None, started: float):
        self.r = renderer
        self.options = renderer.options
        self.package = renderer.package
        self.sample_count = len(samples)
        self.audio_path, self.output_path = audio_path, output_path
        self.on_progress = on_progress
        self.frame_count = feats.frame_count_for_audio(len(samples))
        self.schedule = frame_schedule(self.frame_count, self.package.frame_count, self.options.start_frame,
                                       self.options.loop)
        self.started = started
        self.first_frame_at = None
        self.cancel = threading.Event()
        self.failure: BaseException | None = None
        self.seconds: dict[str, float] = defaultdict(float)
        depth = 2
        self.batches: queue.Queue = queue.Queue(depth)
        self.predictions: queue.Queue = queue.Queue(depth)
        self.pending: queue.Queue = queue.Queue()  # bounded by the ring's free slots
        self.free_slots: queue.Queue[int] = queue.Queue()
        for slot in range(renderer.slots):
            self.free_slots.put(slot)
        self.run_id = renderer.renders
        self.frames_done = 0
        self.frame_output = FrameOutput(frames_dir, self.options.frames_format, self.options.jpeg_quality)
        self.stream, self.mel = self._feature_stream(samples)  # the samples are not kept: only their mel

    def execute(self) -> RenderResult:
        start = self.started
        if self.frame_output.directory is not None:
            self.frame_output.directory.mkdir(parents=True, exist_ok=True)
        partial = self.output_path.with_name(f".{self.output_path.stem}.{os.getpid()}.partial.mp4")
        threads = [threading.Thread(target=self._guard, args=(stage,), name=stage.__name__, daemon=True)
                   for stage in (self._prepare, self._infer, self._dispatch, self._collect)]
        if self.mel is not None:
            threads.insert(0, threading.Thread(target=self._guard, args=(self._encode_features,), daemon=True))
        encoder, collector = self.r.encoder, threads[-1]
        try:
            encoder.open(self.run_id, EncodeSettings(
                partial, self.package.width, self.package.height, self.package.fps, self.audio_path,
                self.options.crf, self.options.preset, self.r.video_codec, self.options.encoder_threads))
            for thread in threads:
                thread.start()
            self._send_frames()
            encoder.finish(self.run_id)
            collector.join()
            if self.failure is not None:
                raise self.failure
            os.replace(partial, self.output_path)
        except BaseException as exc:
            self.cancel.set()
            if encoder.alive:
                encoder.abort(self.run_id)
            for thread in threads:
                thread.join(timeout=30 if thread is collector else 10)
            partial.unlink(missing_ok=True)
            self._drain_pending()
            if isinstance(exc, _Cancelled) and self.failure is not None:
                exc = self.failure
            self.r.pool_broken = isinstance(exc, BrokenProcessPool)
            raise _as_user_error(exc, self.output_path) from None
        for thread in threads:
            thread.join()
        total = time.perf_counter() - start
        self.seconds["total"] = total
        return RenderResult(
            input=str(self.audio_path),
            output=str(self.output_path),
            frames=self.frame_count,
            duration=self.sample_count / SAMPLE_RATE,
            fps=self.frame_count / total if total > 0 else 0.0,
            first_frame_seconds=round(self.first_frame_at - start, 4),
            seconds={k: round(v, 4) for k, v in self.seconds.items()},
            providers=self.r.providers,
        )

    def _feature_stream(self, samples: np.ndarray) -> tuple[FeatureStream, np.ndarray | None]:
        """The feature table source: the package's pre-extracted features, or the audio's mel (encoded later)."""
        if self.options.features == "package":
            if self.package.features is None:
                raise PackageError(f"Package '{self.package.name}' has no pre-extracted features (aud_ave.npy) "
                                   "for --features package.")
            return FeatureStream.from_table(np.asarray(self.package.features)), None
        tick = time.perf_counter()
        mel = melspectrogram(samples)
        self.seconds["audio"] += time.perf_counter() - tick
        return FeatureStream(feats.encoder_window_count(len(mel)) + 2), mel

    def _guard(self, stage: Callable[[], None]) -> None:
        """Run a stage; the first failure cancels every other stage."""
        try:
            stage()
        except _Cancelled:
            pass
        except BaseException as exc:
            if self.failure is None:
                self.failure = exc
            self.cancel.set()

    def _put(self, q: queue.Queue, item) -> None:
        while True:
            if self.cancel.is_set():
                raise _Cancelled()
            try:
                q.put(item, timeout=POLL_SECONDS)
                return
            except queue.Full:
                continue

    def _get(self, q: queue.Queue):
        while True:
            if self.cancel.is_set():
                raise _Cancelled()
            try:
                return q.get(timeout=POLL_SECONDS)
            except queue.Empty:
                continue

    def _batches(self) -> Iterator[np.ndarray]:
        """Output frame numbers per UNet batch. On the CPU the first batch is a single frame, so the first
        frame is encoded after one UNet run rather than a whole batch (cold start); GPUs keep one shape."""
        size = self.options.batch_size
        first = size if self.r.unet.constant_shape else 1
        bounds = [0, *range(first, self.frame_count, size), self.frame_count]
        for start, stop in zip(bounds, bounds[1:]):
            if stop > start:
                yield np.arange(start, stop)

    def _encode_features(self) -> None:
        mel, self.mel = self.mel, None  # the mel goes once it is encoded: long audio keeps only the table
        tick = time.perf_counter()
        self.stream.fill(mel, self.r.encoder_session, self.cancel)
        self.seconds["audio"] += time.perf_counter() - tick

    def _prepare(self) -> None:
        rects = self.package.rects
        for numbers in self._batches():
            indices = self.schedule[numbers]
            audio = self.stream.blocks(numbers, self.cancel)
            tick = time.perf_counter()
            visual = np.empty((len(numbers), 6, 320, 320), np.float32)
            for row, index in enumerate(indices):
                visual_input(crop_328(self.package.frames[index], rects[index]), out=visual[row])
            self.seconds["prepare"] += time.perf_counter() - tick
            self._put(self.batches, (numbers, visual, audio))
        self._put(self.batches, None)

    def _infer(self) -> None:
        lower_thread_priority()
        while (batch := self._get(self.batches)) is not None:
            numbers, visual, audio = batch
            tick = time.perf_counter()
            output = self.r.unet.run(visual, audio)
            predictions = prediction_to_uint8(output)
            self.seconds["inference"] += time.perf_counter() - tick
            self._put(self.predictions, (numbers, predictions))
        self._put(self.predictions, None)

    def _dispatch(self) -> None:
        rects = self.package.rects
        while (batch := self._get(self.predictions)) is not None:
            numbers, predictions = batch
            for number, prediction in zip(numbers, predictions):
                slot = self._get(self.free_slots)
                index = int(self.schedule[number])
                future = self.r.pool.submit(slot, prediction, index, rects[index], int(number), self.frame_output)
                self.pending.put((slot, future))
        self.pending.put(None)

    def _send_frames(self) -> None:
        """Hand composited frames to the encoder process strictly in frame order."""
        sent = 0
        while (item := self._get(self.pending)) is not None:
            slot, future = item
            self.seconds["compositing"] += future.result()
            self.r.encoder.write(self.run_id, slot)
            sent += 1
        if sent != self.frame_count:
            raise RenderError(f"Rendered {sent} of {self.frame_count} frames.")

    def _collect(self) -> None:
        """Take the encoder's replies: released slots go back to the ring; ends when the file is finished
        or aborted (it keeps collecting after a failure elsewhere, so every slot comes back)."""
        while True:
            reply = self.r.encoder.reply(self.run_id, POLL_SECONDS)
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
        return RenderError("A compositing worker process died (out of memory or killed); the render was stopped.")
    if isinstance(exc, OSError):
        return RenderError(f"Could not write {getattr(exc, 'filename', None) or output}: {exc.strerror or exc}.")
    return exc


def render(audio: str | os.PathLike, model: str | os.PathLike, output: str | os.PathLike, **options) -> RenderResult:
    """Render one audio file with a package: ``render("speech.wav", "demo", "out.mp4", batch_size=8)``."""
    with Renderer(model, RenderOptions(**options)) as renderer:
        return renderer.render(audio, output)
