"""Who runs first, and who hears signals: thread priorities, signal masks and GIL hand-off for the stages."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading

GIL_SWITCH_SECONDS = 0.0002
UNET_NICENESS = 5
MAIN_THREAD_SIGNALS = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}  # the ones the CLI turns into a clean stop


def leave_signals_to_the_main_thread() -> None:
    """Block Ctrl-C and termination signals in the calling (non-main) thread and in every thread it creates.

    Python handles signals in the main thread only, but the kernel delivers a process signal to any thread that
    does not block it. OpenVINO's worker threads, once several models have been compiled and dropped (as the
    automatic precision choice does), crash the process when one of them receives it (measured: SIGINT then ends
    a render with SIGSEGV instead of exit 130). Runtime threads inherit the mask of the thread that starts them,
    so every thread that loads or runs a model calls this first.
    """
    signal.pthread_sigmask(signal.SIG_BLOCK, MAIN_THREAD_SIGNALS)


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


def call_on_helper_thread(function, *args, low_priority: bool = False):
    """Call ``function`` on a fresh thread that leaves signals to the main thread (and, if asked, runs at low
    priority), so the threads it creates (ONNX Runtime's and OpenVINO's pools) inherit both; returns its result
    or raises its exception."""
    outcome = {}

    def target():
        leave_signals_to_the_main_thread()
        if low_priority:
            lower_thread_priority()
        try:
            outcome["result"] = function(*args)
        except BaseException as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=target, name=getattr(function, "__name__", "helper"))
    thread.start()
    thread.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["result"]


def call_at_low_priority(function, *args):
    """:func:`call_on_helper_thread` at low priority (the UNet's loads)."""
    return call_on_helper_thread(function, *args, low_priority=True)


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
