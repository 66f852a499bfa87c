"""Partial files: every output is written under a temporary name beside it and renamed when complete.

A process killed mid-render leaves its partial behind; the next render of the same output removes the ones whose
process is gone (by the process id in their name, on this machine).
"""

from __future__ import annotations

import glob
import os
import re
import stat
from pathlib import Path

LEFTOVER = re.compile(r"^\.(?P<name>.*)\.(?P<pid>\d+)\.(partial\.mp4|tmp)$")


def partial_path(output: Path) -> Path:
    """``.NAME.PID.partial.mp4`` beside ``NAME.mp4``."""
    return output.with_name(f".{output.stem}.{os.getpid()}.partial.mp4")


def remove_stale_partials(*targets: Path) -> None:
    """Delete the partial and temporary files that dead processes left for these targets."""
    import psutil

    for target in targets:
        if not target.parent.is_dir():
            continue
        for name, pattern in (
            (target.stem, f".{glob.escape(target.stem)}.*.partial.mp4"),
            (target.name, f".{glob.escape(target.name)}.*.tmp"),
        ):
            for path in target.parent.glob(pattern):
                match = LEFTOVER.match(path.name)
                if not match or match["name"] != name or psutil.pid_exists(int(match["pid"])):
                    continue
                try:
                    if stat.S_ISREG(os.lstat(path).st_mode):  # never anything but a file we could have written
                        path.unlink()
                except FileNotFoundError:
                    pass
