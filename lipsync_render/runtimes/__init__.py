"""Inference runtimes behind one interface (``base``); ``get_backend`` picks one by name, never silently."""

from __future__ import annotations

import importlib
import logging

from lipsync_render.devices import DeviceRequest, cuda_driver_present
from lipsync_render.errors import DeviceError, OptionError
from lipsync_render.runtimes.base import Backend, LoadedModel
from lipsync_render.runtimes.registry import BACKEND_CHOICES, BACKENDS

log = logging.getLogger(__name__)


def _import(name: str) -> Backend | str:
    """The backend, or why its module cannot be imported."""
    try:
        return importlib.import_module(BACKENDS[name]).BACKEND
    except ImportError as exc:
        return f"its Python package is not installed ({exc.name or exc})"


def get_backend(name: str = "auto", device: str = "auto") -> Backend:
    """The backend called ``name``; ``auto`` is the first usable one in preference order that runs ``device``.

    Under ``auto`` a backend that would put an explicit GPU request on the CPU is passed over, and with
    ``--device auto`` on a machine with an NVIDIA driver one that can use the GPU is preferred (the CPU-only
    ONNX Runtime build beside a CUDA PyTorch picks PyTorch); the choice and why is logged.
    """
    if name not in BACKEND_CHOICES:
        raise OptionError(f"--backend must be one of {', '.join(BACKEND_CHOICES)} (got '{name}').")
    if name != "auto":
        backend = _import(name)
        reason = backend if isinstance(backend, str) else backend.unavailable_reason()
        if reason is not None:
            raise DeviceError(f"The {name} backend cannot run here: {reason}.")
        return backend
    request = DeviceRequest.parse(device)
    reasons, cpu_only = {}, None
    for candidate in BACKENDS:
        backend = _import(candidate)
        reason = backend if isinstance(backend, str) else backend.unavailable_reason()
        if reason is None:
            reason, kind = _planned(backend, device)
            if reason is None and request.kind in ("cuda", "tensorrt") and kind != request.kind:
                reason = f"it runs on the {kind.upper() if kind == 'cpu' else kind}, not {request.kind}"
            elif reason is None and request.kind == "auto" and kind == "cpu" and cuda_driver_present():
                cpu_only = cpu_only or backend
                reason = "it cannot use this machine's GPU"
        if reason is None:
            if reasons:
                log.info("--backend auto chose %s (%s).", candidate, _listed(reasons))
            return backend
        reasons[candidate] = reason
    if cpu_only is not None:
        log.info("--backend auto chose %s on the CPU (%s).", cpu_only.name, _listed(reasons))
        return cpu_only
    what = "here" if request.kind == "auto" else f"on --device {device} here"
    raise DeviceError(f"No inference backend can run {what} ({_listed(reasons)}).")


def _planned(backend: Backend, device: str) -> tuple[str | None, str]:
    """(why not, device kind) of a device request on a backend."""
    try:
        return None, backend.planned_device(device)
    except DeviceError as exc:
        return str(exc).rstrip("."), ""


def _listed(reasons: dict[str, str]) -> str:
    return "; ".join(f"{name}: {why}" for name, why in reasons.items())


__all__ = ["BACKENDS", "BACKEND_CHOICES", "Backend", "LoadedModel", "get_backend"]
