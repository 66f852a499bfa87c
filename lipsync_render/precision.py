"""Reduced-precision UNet variants, built once and cached beside the package.

- int8: ONNX Runtime static quantisation (QDQ, per-channel int8 weights, uint8 activations) calibrated on the
  package's own frames; the CPU runs it with integer kernels.
- fp16: float16 weights and activations with float32 inputs/outputs (keep_io_types), for CUDA/TensorRT.

Cache entries are keyed by the fp32 model's sha256 and the recipe version, so a changed model is re-quantised.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

from lipsync_render.compositing import crop_328, visual_input
from lipsync_render.errors import LipsyncError
from lipsync_render.package import Package, sha256_file

PRECISIONS = ("fp32", "fp16", "int8")
RECIPE_VERSION = 1
CALIBRATION_FRAMES = 24


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


def unet_for_precision(package: Package, precision: str) -> Path:
    """The UNet file to load for a precision, building and caching it on first use."""
    if precision not in PRECISIONS:
        raise LipsyncError(f"Unknown precision '{precision}': use fp32, fp16 or int8.")
    if precision == "fp32":
        return package.unet_path
    digest = sha256_file(package.unet_path)[:16]
    target = cache_dir(package) / f"unet.{precision}.v{RECIPE_VERSION}.{digest}.onnx"
    if not target.exists():
        build = quantize_int8 if precision == "int8" else convert_fp16
        _write_atomically(target, lambda tmp: build(package, tmp))
    return target


def engine_cache_dir(package: Package, model: Path, device: str) -> Path | None:
    """TensorRT engine cache for a model on this GPU: keyed by the model's hash and the GPU's name."""
    if not device.startswith("tensorrt"):
        return None
    from lipsync_render.inference import DeviceRequest, gpu_name

    gpu = gpu_name(DeviceRequest.parse(device).index) or "unknown-gpu"
    slug = "".join(c if c.isalnum() else "-" for c in gpu).strip("-").lower()
    path = cache_dir(package) / "tensorrt" / f"{sha256_file(model)[:16]}-{slug}"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _write_atomically(target: Path, build) -> None:
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".build-") as scratch:
        tmp = Path(scratch) / target.name
        build(tmp)
        os.replace(tmp, target)


def calibration_inputs(package: Package, count: int = CALIBRATION_FRAMES, seed: int = 0) -> list[dict]:
    """UNet feeds for calibration: evenly spaced package frames with speech-like audio blocks."""
    from lipsync_render.features import frame_blocks

    table = _calibration_features(package, seed)
    indices = np.linspace(0, package.frame_count - 1, count).round().astype(int)
    rows = np.linspace(8, len(table) - 9, count).round().astype(int)
    visual_name, audio_name = package.unet_io.inputs
    feeds = []
    for index, row in zip(indices, rows):
        visual = visual_input(crop_328(package.frames[index], package.rects[index]))[None]
        feeds.append({visual_name: visual, audio_name: frame_blocks(table, [row])})
    return feeds


def _calibration_features(package: Package, seed: int) -> np.ndarray:
    """The package's pre-extracted features, else the encoder's output on a babble-like test signal."""
    if package.features is not None and len(package.features) >= 32:
        return np.asarray(package.features, np.float32)
    from lipsync_render.features import audio_features
    from lipsync_render.inference import make_session

    return audio_features(babble(6.0, seed), make_session(package.encoder_path, "cpu", 1))


def babble(seconds: float, seed: int = 0, rate: int = 16000) -> np.ndarray:
    """A speech-like signal: voiced harmonics with a wandering pitch, in 4 Hz syllables, with pauses."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    pitch = 120 + 40 * np.sin(2 * np.pi * 0.7 * t) + 10 * rng.standard_normal()
    phase = 2 * np.pi * np.cumsum(pitch) / rate
    voiced = sum(np.sin(k * phase) / k for k in range(1, 12))
    syllables = np.clip(np.sin(2 * np.pi * 4 * t), 0, None) * (np.sin(2 * np.pi * 0.3 * t) > -0.6)
    noise = 0.05 * rng.standard_normal(len(t))
    return (0.3 * syllables * voiced + noise * syllables).astype(np.float32)


def quantize_int8(package: Package, target: Path) -> None:
    """Static QDQ quantisation of the UNet, calibrated (min/max) on the package's own frames."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self, feeds):
            self.feeds = iter(feeds)

        def get_next(self):
            return next(self.feeds, None)

    prepared = target.with_suffix(".pre.onnx")
    quant_pre_process(str(package.unet_path), str(prepared), skip_symbolic_shape=True)
    quantize_static(str(prepared), str(target), Reader(calibration_inputs(package)), quant_format=QuantFormat.QDQ,
                    per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    prepared.unlink(missing_ok=True)


def convert_fp16(package: Package, target: Path) -> None:
    """float16 weights and compute with float32 inputs and outputs (needs onnxconverter-common)."""
    try:
        from onnxconverter_common import float16
    except ImportError:
        raise LipsyncError("fp16 needs onnxconverter-common: pip install 'lipsync-render[fp16]'.") from None
    import onnx

    model = float16.convert_float_to_float16(onnx.load(str(package.unet_path)), keep_io_types=True)
    onnx.save(model, str(target))


def psnr(a: np.ndarray, b: np.ndarray, peak: float = 1.0) -> float:
    """Peak signal-to-noise ratio in dB."""
    mse = float(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(peak**2 / mse)


def precision_psnr(package: Package, precision: str, frames: int = 8) -> float:
    """PSNR (dB) of a precision's UNet output against fp32 on the 320x320 region, on held-out frames."""
    from lipsync_render.inference import make_session

    reference = make_session(package.unet_path, "cpu")
    variant = make_session(unet_for_precision(package, precision), "cpu")
    feeds = calibration_inputs(package, frames, seed=1)
    outputs = [(reference.run(None, f)[0], variant.run(None, f)[0]) for f in feeds]
    return psnr(np.concatenate([a for a, _ in outputs]), np.concatenate([b for _, b in outputs]))
