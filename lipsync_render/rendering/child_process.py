"""What every helper process of a render does first: ignore Ctrl-C (the parent handles it) and die with the parent.

A parent that is killed outright (SIGKILL, out of memory) cannot stop its helpers, so each one watches for its
parent to go and exits within a second; once all are gone, multiprocessing's resource tracker frees the ring.
"""

from __future__ import annotations

import os
import signal
import threading
import time

PARENT_POLL_SECONDS = 0.5


def start_as_helper() -> None:
    """Call first thing in a helper process."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    parent = os.getppid()

    def watch() -> None:
        while True:
            time.sleep(PARENT_POLL_SECONDS)
            if os.getppid() != parent:  # reparented: the parent is gone
                os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()
