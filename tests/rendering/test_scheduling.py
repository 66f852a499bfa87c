"""Thread priorities and the GIL switch interval used by the pipeline."""

import os
import sys
import threading

import pytest

from lipsync_render.rendering.scheduling import call_at_low_priority, lower_thread_priority, quick_gil_handoff


def niceness_of_this_thread() -> int:
    return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())


def test_low_priority_call_runs_on_a_nicer_thread_and_returns():
    base = os.getpriority(os.PRIO_PROCESS, 0)
    assert call_at_low_priority(niceness_of_this_thread) == min(base + 5, 19)
    assert niceness_of_this_thread() == base, "the caller's own priority is untouched"


def test_low_priority_call_raises_the_functions_error():
    def broken():
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        call_at_low_priority(broken)


def test_lower_thread_priority_affects_only_the_calling_thread():
    seen = []
    thread = threading.Thread(target=lambda: (lower_thread_priority(3), seen.append(niceness_of_this_thread())))
    thread.start()
    thread.join()
    assert seen == [min(os.getpriority(os.PRIO_PROCESS, 0) + 3, 19)]


def test_gil_switch_interval_is_restored():
    before = sys.getswitchinterval()
    with quick_gil_handoff(0.0001):
        assert sys.getswitchinterval() == pytest.approx(0.0001)
    assert sys.getswitchinterval() == before
