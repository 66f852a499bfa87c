"""Waiting that gives up when a render is cancelled: every blocking step of a stage polls the cancel event."""

from __future__ import annotations

import queue
import threading

POLL_SECONDS = 0.1


class Cancelled(Exception):
    """Another stage failed or the user interrupted; the stage that sees it just stops."""


def put(q: queue.Queue, item, cancel: threading.Event) -> None:
    """``q.put(item)``, unless the render is cancelled first."""
    while True:
        if cancel.is_set():
            raise Cancelled()
        try:
            q.put(item, timeout=POLL_SECONDS)
            return
        except queue.Full:
            continue


def get(q: queue.Queue, cancel: threading.Event):
    """``q.get()``, unless the render is cancelled first."""
    while True:
        if cancel.is_set():
            raise Cancelled()
        try:
            return q.get(timeout=POLL_SECONDS)
        except queue.Empty:
            continue
