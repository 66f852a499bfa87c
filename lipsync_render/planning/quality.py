"""How far a reduced-precision UNet strays from fp32: the yardstick of ``--precision auto`` and of the tests."""

from __future__ import annotations

import numpy as np

from lipsync_render.contract import UNET
from lipsync_render.options import SessionOptions
from lipsync_render.package import Package
from lipsync_render.runtimes import get_backend
from lipsync_render.runtimes.calibration import calibration_inputs


def psnr(a: np.ndarray, b: np.ndarray, peak: float = 1.0) -> float:
    """Peak signal-to-noise ratio in dB."""
    with np.errstate(invalid="ignore", over="ignore"):  # a broken model's inf/NaN: the render says so, not numpy
        mse = float(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(peak**2 / mse)


def precision_psnr(package: Package, precision: str, frames: int = 8, backend: str = "onnxruntime") -> float:
    """PSNR (dB) of a precision's UNet output against fp32 on the 320x320 region, on held-out frames (CPU)."""
    runtime = get_backend(backend)
    reference = runtime.load(package, UNET, SessionOptions(device="cpu", precision="fp32"))
    variant = runtime.load(package, UNET, SessionOptions(device="cpu", precision=precision))
    outputs = [(reference.run(*feed), variant.run(*feed)) for feed in calibration_inputs(package, frames, seed=1)]
    return psnr(np.concatenate([a for a, _ in outputs]), np.concatenate([b for _, b in outputs]))
