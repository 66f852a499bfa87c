"""Package name -> directory, the one rule: a path names a directory as given, a bare name is looked up in
``./packages`` and then each ``$LIPSYNC_PACKAGES`` folder (an existing package), or goes under ``./packages``
(a new one).
"""

from __future__ import annotations

import os
from pathlib import Path

from lipsync_render.errors import PackageError

PACKAGES_DIR = "packages"
PACKAGES_ENV = "LIPSYNC_PACKAGES"


def names_a_path(name: str | os.PathLike) -> bool:
    """Whether a package argument is a path rather than a bare name: it holds a separator or starts with '.'."""
    text = str(name)
    return os.sep in text or "/" in text or text.startswith(".")


def package_search_dirs() -> list[Path]:
    """Where ``--model NAME`` looks, in order: ``./packages``, then each ``$LIPSYNC_PACKAGES`` entry."""
    return [Path.cwd() / PACKAGES_DIR, *(Path(p) for p in os.environ.get(PACKAGES_ENV, "").split(os.pathsep) if p)]


def resolve_package_path(name: str | os.PathLike) -> Path:
    """An existing package: by path (a path, or a bare name that is a directory here), else by name in
    :func:`package_search_dirs`."""
    text = str(name)
    direct = Path(text).expanduser()
    if direct.is_dir() or names_a_path(text):
        if not direct.is_dir():
            raise PackageError(f"Model package directory {direct} does not exist.")
        return direct
    candidates = [folder / text for folder in package_search_dirs()]
    for candidate in candidates:
        if candidate.is_dir():
            return candidate
    looked = ", ".join(dict.fromkeys(str(c.parent) for c in candidates))
    raise PackageError(f"Unknown model '{text}': no package directory of that name in {looked}.")


def package_destination(name: str, out_dir: Path | None = None) -> Path:
    """Where a new package goes: a path as given, else ``OUT_DIR/NAME`` (by default ``packages/NAME``, the first
    folder :func:`resolve_package_path` looks in). Unlike a lookup, the directory need not exist, and a bare name
    never means a directory of that name here."""
    if names_a_path(name):
        return Path(name)
    return (out_dir if out_dir is not None else Path(PACKAGES_DIR)) / name
