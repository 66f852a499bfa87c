"""The shared-memory segment behind the frame ring: named after its creator, freed by whoever outlives it.

A segment is ``lipsync-PID-TOKEN`` in ``/dev/shm``. Its creator unlinks it on close; its helper processes unlink it
when they see the creator die (SIGKILL, out of memory, a Ray worker killed with its node's job); and any later
render on the machine sweeps segments whose creator is gone (:func:`sweep_rings`), as stale partial files are
swept. multiprocessing's resource tracker is kept out of it: it would unlink a second time and print warnings and
KeyError tracebacks when one of its helpers is killed mid-render.
"""

from __future__ import annotations

import os
import re
import secrets
from multiprocessing import resource_tracker, shared_memory
from pathlib import Path

PREFIX = "lipsync-"
NAME = re.compile(rf"^{PREFIX}(?P<pid>\d+)-[0-9a-f]+$")
SHM_DIR = Path("/dev/shm")


def create_ring(size: int) -> shared_memory.SharedMemory:
    """A new segment of ``size`` bytes named after this process."""
    shm = shared_memory.SharedMemory(name=f"{PREFIX}{os.getpid()}-{secrets.token_hex(4)}", create=True, size=size)
    _untrack(shm)
    return shm


def attach_ring(name: str) -> shared_memory.SharedMemory:
    """The segment ``name``, opened by a helper process."""
    shm = shared_memory.SharedMemory(name=name)
    _untrack(shm)
    return shm


def unlink_ring(name: str) -> None:
    """Remove the segment's name (its memory goes once every mapping is gone); quiet if it is already gone."""
    try:
        os.unlink(SHM_DIR / name.lstrip("/"))
    except FileNotFoundError:
        pass
    except OSError:  # no /dev/shm (not Linux): the library's own unlink
        try:
            shared_memory.SharedMemory(name=name).unlink()
        except FileNotFoundError:
            pass


def sweep_rings() -> list[str]:
    """Unlink the segments whose creating process is gone on this machine; the names removed."""
    import psutil

    try:
        names = os.listdir(SHM_DIR)
    except OSError:
        return []
    removed = []
    for name in names:
        match = NAME.match(name)
        if match and not psutil.pid_exists(int(match["pid"])):
            unlink_ring(name)
            removed.append(name)
    return removed


def _untrack(shm: shared_memory.SharedMemory) -> None:
    """Keep the resource tracker from registering the segment (Python < 3.13 registers on open, too)."""
    try:
        resource_tracker.unregister(shm._name, "shared_memory")
    except Exception:  # the tracker is gone or never started: nothing registered to undo
        pass
