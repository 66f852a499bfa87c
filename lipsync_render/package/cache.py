"""Where derived files of a package (quantised models, engine caches) are kept."""

from __future__ import annotations

import os
from pathlib import Path

from lipsync_render.package.loader import Package


def cache_dir(package: Package) -> Path:
    """``PACKAGE/cache`` when writable, else a per-user cache directory."""
    preferred = package.root / "cache"
    try:
        preferred.mkdir(exist_ok=True)
        if os.access(preferred, os.W_OK):
            return preferred
    except OSError:
        pass
    fallback = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "lipsync-render" / package.name
    fallback.mkdir(parents=True, exist_ok=True)
    return fallback
