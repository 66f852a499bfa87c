"""Inference runtimes behind one interface (``base``); ``get_backend`` picks one by name, never silently."""

from __future__ import annotations

import importlib

from lipsync_render.errors import DeviceError, OptionError
from lipsync_render.runtimes.base import Backend, LoadedModel
from lipsync_render.runtimes.registry import BACKEND_CHOICES, BACKENDS


def _import(name: str) -> Backend | str:
    """The backend, or why its module cannot be imported."""
    try:
        return importlib.import_module(BACKENDS[name]).BACKEND
    except ImportError as exc:
        return f"its Python package is not installed ({exc.name or exc})"


def get_backend(name: str = "auto") -> Backend:
    """The backend called ``name``; ``auto`` is the first usable one in preference order."""
    if name not in BACKEND_CHOICES:
        raise OptionError(f"--backend must be one of {', '.join(BACKEND_CHOICES)} (got '{name}').")
    reasons = {}
    for candidate in BACKENDS if name == "auto" else (name,):
        backend = _import(candidate)
        reason = backend if isinstance(backend, str) else backend.unavailable_reason()
        if reason is None:
            return backend
        reasons[candidate] = reason
    if name != "auto":
        raise DeviceError(f"The {name} backend cannot run here: {reasons[name]}.")
    raise DeviceError("No inference backend can run here (" + "; ".join(f"{k}: {v}" for k, v in reasons.items()) + ").")


__all__ = ["BACKENDS", "BACKEND_CHOICES", "Backend", "LoadedModel", "get_backend"]
