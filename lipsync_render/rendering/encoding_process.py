"""The video encoder process: H.264/AAC encoding fed with finished I420 frames through the shared-memory ring.

PyAV releases the GIL inside x264 but takes it back several times per frame; in the pipeline's process each
return waits for whichever stage thread holds the GIL (measured: x264 at 51 fps next to one busy Python thread,
212 fps alone). In its own process the encoder never waits. One process serves a Renderer for all its renders:
open a file, send ring slots in frame order (each comes back as "released" once x264 has copied it), finish or
abort. The process dying is reported as an error by ``reply``, never as a hang.
"""

from __future__ import annotations

import multiprocessing
import queue
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from lipsync_render.errors import RenderError
from lipsync_render.media.video import VideoTarget, VideoWriter
from lipsync_render.rendering.child_process import exit_without_teardown, helper_start_failure, start_as_helper
from lipsync_render.rendering.frame_ring import RingLayout
from lipsync_render.rendering.shared_ring import attach_ring, unlink_ring

if TYPE_CHECKING:
    from lipsync_render.media.audio import AudioStream
    from lipsync_render.options import RenderOptions
    from lipsync_render.planning.session_plan import SessionPlan


class VideoEncoderProcess:
    """A long-lived encoding process reading frames from the ring named ``ring_name``."""

    def __init__(self, ring_name: str, layout: RingLayout):
        context = multiprocessing.get_context("spawn")
        self.requests = context.Queue()
        self.replies = context.Queue()
        self.process = context.Process(
            target=_serve, args=(ring_name, layout, self.requests, self.replies), name="lipsync-encoder", daemon=True
        )
        self.process.start()

    def wait_ready(self, timeout: float = 120) -> None:
        """Block until the process has started and attached to the ring; RenderError if it died starting."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if self.replies.get(timeout=0.1)[1] == "ready":
                    return
            except queue.Empty:
                if not self.process.is_alive():
                    raise RenderError(helper_start_failure("video encoder", self.process.exitcode)) from None
        raise RenderError("The video encoder process did not start within two minutes.")

    def open(self, run: int, target: VideoTarget) -> None:
        self.requests.put(("open", run, target))

    def write(self, run: int, slot: int) -> None:
        self.requests.put(("frame", run, slot))

    def finish(self, run: int) -> None:
        self.requests.put(("finish", run, None))

    def abort(self, run: int) -> None:
        self.requests.put(("abort", run, None))

    def reply(self, run: int, timeout: float) -> tuple[str, object] | None:
        """The next reply for render ``run`` as (kind, value), None on timeout; RenderError if the process died.

        Replies carry the render they belong to, so a late reply of an aborted render is never taken for one of
        the next render's.
        """
        try:
            reply_run, kind, value = self.replies.get(timeout=timeout)
            return (kind, value) if reply_run == run else None
        except queue.Empty:
            if not self.process.is_alive():
                raise RenderError(
                    "The video encoder process died (out of memory or killed); the render was stopped."
                ) from None
            return None

    @property
    def alive(self) -> bool:
        return self.process.is_alive()

    def close(self) -> None:
        if self.process.is_alive():
            self.requests.put(("exit", None, None))
            self.process.join(timeout=5)
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(timeout=5)


def _serve(ring_name: str, layout: RingLayout, requests, replies) -> None:
    """The encoder process: attach to the ring, then handle requests until told to exit. If the parent dies, the
    partial file being written and the ring go with this process (nobody else is left to remove them)."""
    writing: dict[str, Path] = {}

    def clean_up() -> None:
        if "path" in writing:
            writing["path"].unlink(missing_ok=True)
        unlink_ring(ring_name)

    start_as_helper(clean_up)
    ring = attach_ring(ring_name)
    _, frames = layout.views(ring.buf)
    replies.put((None, "ready", None))
    writer, target, busy = None, None, 0.0
    while True:
        kind, run, value = requests.get()
        if kind == "exit":
            break
        try:
            if kind == "open":
                target, busy = value, 0.0
                writing["path"] = Path(target.path)
                writer = _open_writer(target, lambda message, run=run: replies.put((run, "warning", message)))
            elif kind == "frame":
                if writer is not None:  # after an error or abort, frames only come back
                    start = time.perf_counter()
                    writer.write_i420(frames[value])
                    busy += time.perf_counter() - start
                replies.put((run, "released", value))
            elif kind == "finish":
                start = time.perf_counter()
                writer.close()
                writer = None
                replies.put((run, "finished", busy + time.perf_counter() - start))
            elif kind == "abort":
                if writer is not None:
                    writer.abort()
                writer = None
                replies.put((run, "aborted", None))
        except Exception as exc:  # reported to the parent as one sentence; the parent stops the render
            if writer is not None:
                writer.abort()
            writer = None
            replies.put((run, "error", _describe(exc, target)))
            if kind == "frame":
                replies.put((run, "released", value))
    del frames
    ring.close()
    _exit_now(replies)


def _exit_now(replies) -> None:
    """End this process once every reply is written, without the interpreter's teardown: a spawned process
    otherwise tears down PyAV and NumPy on its way out, and the parent's close() waited 0.03 s for that."""
    replies.close()
    replies.join_thread()
    exit_without_teardown(0)


def _open_writer(target: VideoTarget, warn) -> VideoWriter:
    """The writer for ``target``; an automatically chosen NVENC that fails to open here (session limits, an old
    driver at this size) gives way to its fallback, with a warning."""
    import av

    try:
        return VideoWriter(target)
    except (av.FFmpegError, ValueError) as exc:
        if target.fallback_encoder is None:
            raise
        warn(f"{target.encoder} could not be opened ({exc}); encoding with {target.fallback_encoder} instead.")
        return VideoWriter(replace(target, encoder=target.fallback_encoder, fallback_encoder=None))


def _describe(exc: Exception, target: VideoTarget | None) -> str:
    if isinstance(exc, OSError):
        path = getattr(exc, "filename", None) or (target.path if target else "the output")
        return f"Could not write {path}: {exc.strerror or exc}."
    return f"Encoding failed: {type(exc).__name__}: {exc}."


def video_target(path: Path, plan: SessionPlan, options: RenderOptions, fps: int, audio: AudioStream) -> VideoTarget:
    """What the encoder process writes for one render: the plan's encoder and size, the render's quality settings,
    the audio muxed beside it (its length already counted)."""
    return VideoTarget(
        path,
        *plan.output_size,
        fps,
        audio.path,
        plan.video_encoder,
        plan.encoder_threads,
        audio.source.frames,
        fallback_encoder=plan.fallback_encoder,
        crf=options.crf,
        gop=options.gop,
        preset=options.preset,
        audio_bitrate=options.audio_bitrate,
    )
