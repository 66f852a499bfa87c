"""Where derived files of a package (quantised models, engine caches, the precision choice) are kept.

Every path here is built from package content (its name) or from names the callers make (a digest, a recipe):
each is kept inside the cache folder, so a manifest naming its package '/etc' or '../../x' cannot place a file
anywhere else (a read-only package's derived files go to the per-user cache, under a folder of its own).
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

from lipsync_render.errors import PackageError
from lipsync_render.package.loader import Package
from lipsync_render.paths import contained_path

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def cache_folder_name(name: str) -> str:
    """One path component for a package name: the name itself when it is a plain file name, else its safe
    characters and a digest of the whole name (so '/a/b' and 'a_b' do not share a folder)."""
    if name and len(name) <= 100 and not _UNSAFE.search(name) and not name.startswith("."):
        return name
    digest = hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:12]
    safe = _UNSAFE.sub("_", name).lstrip("._")[:60]
    return f"{safe}-{digest}" if safe else f"package-{digest}"


def cache_dir(package: Package) -> Path:
    """``PACKAGE/cache`` when writable, else a per-user cache directory; PackageError when neither can be made."""
    preferred = package.root / "cache"
    try:
        preferred.mkdir(exist_ok=True)
        if preferred.is_dir() and not preferred.is_symlink() and os.access(preferred, os.W_OK):
            return preferred
    except OSError:
        pass
    user_cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "lipsync-render"
    fallback = user_cache / cache_folder_name(package.name)
    try:
        fallback.mkdir(parents=True, exist_ok=True)
        if os.access(fallback, os.W_OK) and not fallback.is_symlink():
            return fallback
    except OSError:
        pass
    raise PackageError(
        f"No cache folder can be written for package '{package.name}': neither {preferred} nor "
        f"{fallback} is writable; set XDG_CACHE_HOME to a writable folder."
    )


def cache_path(package: Package, *parts: str) -> Path:
    """``cache_dir(package) / parts...``, refused (PackageError) unless it stays inside the cache folder."""
    folder = cache_dir(package)
    path = contained_path(folder, "/".join(parts))
    if path is None:
        raise PackageError(f"The cache entry {'/'.join(parts)!r} of package '{package.name}' leaves {folder}.")
    return path
