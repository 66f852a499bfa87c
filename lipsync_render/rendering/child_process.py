"""What every helper process of a render does first: ignore Ctrl-C (the parent handles it) and die with the parent.

A parent that is killed outright (SIGKILL, out of memory) cannot stop its helpers, so each one watches for its
parent to go and, within a second, cleans up what the parent can no longer (the shared ring, the partial file being
written) and exits.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import NoReturn

PARENT_POLL_SECONDS = 0.5


def helper_start_failure(what: str, exit_code: int | None) -> str:
    """The sentence for a helper that died while starting: almost always a script without a main guard, whose
    spawned helpers re-run it and stop at the Renderer (see :func:`refuse_in_a_starting_helper`)."""
    return (
        f"The {what} process exited while starting (exit code {exit_code}); a script that uses lipsync_render "
        'must create the Renderer under `if __name__ == "__main__":`, since its helper processes are spawned.'
    )


def refuse_in_a_starting_helper() -> None:
    """A helper process re-imports the main script while it starts; a script without a main guard then reaches
    its Renderer there. End that helper quietly: the parent reports the missing guard in one sentence."""
    import multiprocessing
    import sys

    if getattr(multiprocessing.current_process(), "_inheriting", False):
        sys.exit(1)


def start_as_helper(on_parent_gone: Callable[[], None] | None = None) -> None:
    """Call first thing in a helper process; ``on_parent_gone`` runs (on a watcher thread) before it exits when
    the parent dies."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    try:
        os.setpgid(0, 0)  # a killer of the parent's process group (Ray ending a worker) leaves the clean-up to run
    except OSError:
        pass
    parent = os.getppid()

    def watch() -> None:
        while True:
            time.sleep(PARENT_POLL_SECONDS)
            if os.getppid() != parent:  # reparented: the parent is gone
                try:
                    if on_parent_gone is not None:
                        on_parent_gone()
                finally:
                    os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def exit_without_teardown(code: int) -> NoReturn:
    """Flush stdout and stderr and end the process with ``code`` now, without the interpreter's teardown
    (collecting every module, then the native libraries' static destructors), which a finished process does not
    need. Whatever must still happen (atexit handlers, queues to flush) is the caller's to do first."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe or stream: nothing left to say there
            pass
    os._exit(code)
