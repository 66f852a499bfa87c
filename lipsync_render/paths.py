"""Paths from untrusted input: kept inside a directory, and never replacing what is not a regular file."""

from __future__ import annotations

import os
import stat
from pathlib import Path, PurePosixPath


def contained_path(root: Path, rel: str) -> Path | None:
    """``root / rel`` when ``rel`` is relative, has no '..' and resolves (links followed) inside ``root``."""
    if not rel or "\0" in rel or os.path.isabs(rel) or PurePosixPath(rel.replace("\\", "/")).is_absolute():
        return None
    if ".." in PurePosixPath(rel.replace("\\", "/")).parts:
        return None
    path = root / rel
    try:
        if not path.resolve().is_relative_to(root.resolve()):
            return None
    except (OSError, RuntimeError):  # a symlink loop
        return None
    return path


def same_file(a: Path, b: Path) -> bool:
    """Whether two paths name one file (an existing one by device and inode, else by resolved path)."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.realpath(a) == os.path.realpath(b)


def file_kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISLNK, "a symbolic link"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
    ):
        if test(mode):
            return name
    return "not a regular file"


def replaceable_problem(path: Path, inputs: tuple[Path, ...] = ()) -> str | None:
    """Why a finished file must not be renamed onto ``path``, or None: its folder must exist and be writable,
    and ``path`` be absent or a regular file (not a link, device, FIFO, socket or folder) that is no input."""
    parent = path.parent
    if not parent.is_dir():
        return f"Output directory {parent} does not exist."
    if not os.access(parent, os.W_OK):
        return f"Output directory {parent} is not writable."
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        mode = None
    except OSError as exc:
        return f"Output path {path} cannot be checked ({exc.strerror or exc})."
    if mode is not None and not stat.S_ISREG(mode):
        return f"Output path {path} is {file_kind(mode)}; refusing to replace it."
    for source in inputs:
        if same_file(path, source):
            return f"Output path {path} is the input {source}; refusing to overwrite an input."
    return None


def first_collision(outputs: list[tuple[str, Path]]) -> tuple[str, str, Path] | None:
    """The first two (label, path) entries that name one output file, as (first label, second label, path)."""
    seen: dict[str, str] = {}
    for label, path in outputs:
        key = os.path.realpath(path)
        if key in seen:
            return seen[key], label, path
        seen[key] = label
    return None


def first_overwritten_input(outputs: list[Path], inputs: list[Path]) -> tuple[Path, Path] | None:
    """The first (output, input) pair that name one file."""
    for output in outputs:
        for source in inputs:
            if same_file(output, source):
                return output, source
    return None


def honour_umask(path: Path) -> None:
    """Give a file made by mkstemp (0600) or a folder made by mkdtemp (0700) the permissions an ordinary create
    would (0666 or 0777 less the umask): a package on shared storage must be readable by workers of other users."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, (0o777 if path.is_dir() else 0o666) & ~umask)


def temporary_path(target: Path) -> Path:
    """``.NAME.PID.tmp`` beside a file written atomically (a sidecar, a report); see render/partials.py."""
    return target.with_name(f".{target.name}.{os.getpid()}.tmp")


def write_file_atomically(path: Path, write, inputs: tuple[Path, ...] = ()) -> None:
    """``write(temporary)`` beside ``path``, then rename it onto ``path``; refused (RenderError) where a finished
    file must not go (see :func:`replaceable_problem`), and nothing is left behind when writing fails."""
    from lipsync_render.errors import RenderError

    path = Path(path)
    problem = replaceable_problem(path, inputs)
    if problem:
        raise RenderError(problem)
    temporary = temporary_path(path)
    try:
        write(temporary)
        problem = replaceable_problem(path, inputs)
        if problem:
            raise RenderError(problem)
        os.replace(temporary, path)
    except OSError as exc:
        raise RenderError(f"Could not write {path}: {exc.strerror or exc}.") from None
    finally:
        temporary.unlink(missing_ok=True)
