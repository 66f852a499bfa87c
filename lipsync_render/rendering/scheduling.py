"""Who runs first: thread priorities and GIL hand-off for the pipeline's stages."""

from __future__ import annotations

import contextlib
import os
import sys
import threading

GIL_SWITCH_SECONDS = 0.0002
UNET_NICENESS = 5


def lower_thread_priority(niceness: int = UNET_NICENESS) -> None:
    """Make the calling thread (and threads it starts later) yield the CPU to the light stages.

    The UNet is the only stage that would take every cycle it is given; prepare, compositing and the encoder
    only ever do work the UNet has made for them. Letting them run first keeps them from ever stalling the
    pipeline, and the UNet still gets every cycle they leave. Raising one's own niceness needs no privilege.
    """
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), os.getpriority(os.PRIO_PROCESS, 0) + niceness)
    except (AttributeError, OSError):  # not on Linux/macOS, or not permitted: priorities stay equal
        pass


def call_at_low_priority(function, *args):
    """Call ``function`` on a fresh low-priority thread, so the threads it creates (ONNX Runtime's intra-op
    pool) inherit that priority; returns its result or raises its exception."""
    outcome = {}

    def target():
        lower_thread_priority()
        try:
            outcome["result"] = function(*args)
        except BaseException as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=target, name="load-unet")
    thread.start()
    thread.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["result"]


@contextlib.contextmanager
def quick_gil_handoff(seconds: float = GIL_SWITCH_SECONDS):
    """Shorten the interpreter's GIL switch interval while the stage threads run.

    Stages spend most of their time in native code (ONNX Runtime, OpenCV, x264) that releases the GIL, but each
    return to Python waits for the GIL; with the default 5 ms interval a thread running Python code makes the
    encoder wait up to 5 ms several times per frame (measured: x264 at 51 fps beside one busy Python thread,
    175 fps with 0.2 ms).
    """
    previous = sys.getswitchinterval()
    sys.setswitchinterval(min(previous, seconds))
    try:
        yield
    finally:
        sys.setswitchinterval(previous)
