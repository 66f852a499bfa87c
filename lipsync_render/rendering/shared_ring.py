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


def sweep_semaphores(min_age_s: float = 10.0) -> list[str]:
    """Unlink multiprocessing's named semaphores (``sem.mp-*``, the locks of its queues and pools) that this user's
    dead processes left: those no process of this user maps any more, older than ``min_age_s``.

    A helper's resource tracker unlinks them when its process ends, but a node killed whole (its trackers too)
    leaves them behind. A semaphore is mapped by every process that uses it from its creation on and is readable
    only by its user (mode 0600), so one that none of the user's processes maps is nobody's. Mappings are matched by
    inode: glibc maps a semaphore under a temporary name before it links it to its own. Run after a cluster run,
    not per render: it reads every process's memory map.
    """
    import time

    import psutil

    uid, now = os.getuid(), time.time()
    candidates: dict[int, str] = {}
    try:
        device = os.stat(SHM_DIR).st_dev
        for entry in os.scandir(SHM_DIR):
            info = entry.stat(follow_symlinks=False)
            if entry.name.startswith("sem.mp-") and info.st_uid == uid and now - info.st_mtime > min_age_s:
                candidates[info.st_ino] = entry.name
    except OSError:
        return []
    for process in psutil.process_iter(["uids"]):
        if not candidates:
            return []
        try:
            if process.info["uids"] is None or process.info["uids"].real != uid:
                continue
            with open(f"/proc/{process.pid}/maps") as maps:
                for line in maps:
                    fields = line.split(None, 5)
                    if len(fields) == 6 and fields[5].startswith("/dev/shm/") and fields[4].isdigit():
                        major, minor = (int(part, 16) for part in fields[3].split(":"))
                        if os.makedev(major, minor) == device:
                            candidates.pop(int(fields[4]), None)
        except (FileNotFoundError, ProcessLookupError, psutil.NoSuchProcess):
            continue  # ended while we looked: it maps nothing any more
        except (OSError, psutil.Error):
            if _could_use_multiprocessing(process):
                return []  # a Python process of ours whose map cannot be read: unsafe to judge, leave everything
    for name in candidates.values():
        try:
            os.unlink(SHM_DIR / name)
        except OSError:
            pass
    return sorted(candidates.values())


def _could_use_multiprocessing(process) -> bool:
    """Whether a process whose memory map is hidden (a sandbox's init, say) could hold these semaphores: only a
    Python interpreter (or a Ray worker, which renames itself ``ray::...``) creates them."""
    try:
        name = process.name()
    except Exception:  # gone or hidden too: assume the worst
        return True
    return name.startswith(("python", "ray::")) or "python" in name


def _untrack(shm: shared_memory.SharedMemory) -> None:
    """Keep the resource tracker from registering the segment (Python < 3.13 registers on open, too)."""
    try:
        resource_tracker.unregister(shm._name, "shared_memory")
    except Exception:  # the tracker is gone or never started: nothing registered to undo
        pass
