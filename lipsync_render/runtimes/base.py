"""What the render pipeline needs from an inference runtime: a backend that loads models, and loaded models.

A backend is one module under ``runtimes/`` exposing ``BACKEND`` plus one entry in ``registry.BACKENDS``. The
feature stage and the UNet stage only ever see :class:`LoadedModel`.
"""

from __future__ import annotations

import importlib.util
import sys
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from pathlib import Path

    import numpy as np

    from lipsync_render.contract import ModelContract
    from lipsync_render.options import SessionOptions
    from lipsync_render.package import Package


class LoadedModel(Protocol):
    """A model loaded on one device, verified to really run there."""

    contract: ModelContract
    path: Path | None  # the model file, for messages
    device: str  # where it really runs: "cpu", "cuda" or "tensorrt"
    providers: list[str]  # what reports name as the execution providers really used
    batch_size: int  # samples per run; more inputs run in chunks of this size
    constant_shape: bool  # every run has exactly batch_size samples (a short batch is padded, the padding dropped)
    io_on_device: bool  # inputs and outputs go through device buffers bound once, not fresh host copies

    def run(self, *inputs: np.ndarray) -> np.ndarray:
        """The model's first output (n, *contract.output) for n samples of each input, any n, in the contract's
        dtypes (float32, or for ``UNET_UINT8`` uint8 crops in and uint8 predictions out)."""
        ...

    def warm_up(self) -> None:
        """One full-size run on zeros, so engine builds, autotuning and graph capture happen before frame one."""
        ...


class Backend(Protocol):
    """An inference runtime."""

    name: str

    def unavailable_reason(self) -> str | None:
        """Why this runtime cannot run on this machine (a clause), or None when it can."""
        ...

    def planned_device(self, device: str) -> str:
        """The device kind ('cpu', 'cuda', 'tensorrt') a request will run on if the models load there."""
        ...

    def uint8_unet(self, device_kind: str) -> bool:
        """Whether ``load`` takes ``contract.UNET_UINT8`` (uint8 crops in, uint8 predictions out) on that device."""
        ...

    def load(self, package: Package, contract: ModelContract, options: SessionOptions) -> LoadedModel:
        """The package's model for ``contract`` on the requested device and precision; DeviceError if it cannot."""
        ...


def package_found(name: str) -> bool:
    """Whether the Python package ``name`` is installed (and not blocked), found without importing it: a plan
    asks every backend whether it could run, and importing them all cost 0.04 s (ONNX Runtime) of each start that
    then ran another. An installed package that fails to import is a DeviceError where a backend loads it."""
    if name in sys.modules:
        return sys.modules[name] is not None
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False
