"""Where derived files of a package (quantised models, engine caches) are kept."""

from __future__ import annotations

import os
from pathlib import Path

from lipsync_render.errors import PackageError
from lipsync_render.package.loader import Package


def cache_dir(package: Package) -> Path:
    """``PACKAGE/cache`` when writable, else a per-user cache directory; PackageError when neither can be made."""
    preferred = package.root / "cache"
    try:
        preferred.mkdir(exist_ok=True)
        if preferred.is_dir() and not preferred.is_symlink() and os.access(preferred, os.W_OK):
            return preferred
    except OSError:
        pass
    fallback = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "lipsync-render" / package.name
    try:
        fallback.mkdir(parents=True, exist_ok=True)
        if os.access(fallback, os.W_OK):
            return fallback
    except OSError:
        pass
    raise PackageError(
        f"No cache folder can be written for package '{package.name}': neither {preferred} nor "
        f"{fallback} is writable; set XDG_CACHE_HOME to a writable folder."
    )
