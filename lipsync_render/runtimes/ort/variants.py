"""Reduced-precision UNet variants for ONNX Runtime, built once and cached beside the package.

- int8: ONNX Runtime static quantisation (QDQ, per-channel int8 weights, uint8 activations) calibrated on the
  package's own frames; the CPU runs it with integer kernels.
- fp16: float16 weights and activations with float32 inputs/outputs (keep_io_types), for CUDA/TensorRT.

Cache entries are keyed by the fp32 model's sha256 and the recipe version, so a changed model is re-quantised.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from lipsync_render.devices import DeviceRequest, nvidia_smi
from lipsync_render.errors import LipsyncError
from lipsync_render.package import Package, sha256_file
from lipsync_render.package.cache import cache_path
from lipsync_render.runtimes.calibration import calibration_inputs

RECIPE_VERSION = 1
ORT_PRECISIONS = ("fp32", "fp16", "int8")


def unet_for_precision(package: Package, precision: str) -> Path:
    """The UNet file to load for a precision, building and caching it on first use."""
    if precision not in ORT_PRECISIONS:
        raise LipsyncError(f"Unknown precision '{precision}' for ONNX Runtime: use fp32, fp16 or int8.")
    if precision == "fp32":
        return package.unet_path
    digest = sha256_file(package.unet_path)[:16]
    target = cache_path(package, f"unet.{precision}.v{RECIPE_VERSION}.{digest}.onnx")
    if not target.exists():
        build = quantize_int8 if precision == "int8" else convert_fp16
        write_atomically(target, lambda tmp: build(package, tmp))
    return target


def engine_cache_dir(package: Package, model: Path, device: str, precision: str = "fp32") -> Path | None:
    """TensorRT engine cache for a model on this GPU: a folder per engine key (see :func:`engine_key`)."""
    if not device.startswith("tensorrt"):
        return None
    path = cache_path(
        package,
        "tensorrt",
        engine_key(
            sha256_file(model),
            gpu_identity(DeviceRequest.parse(device).index),
            tensorrt_version(),
            ort_version(),
            precision,
        ),
    )
    path.mkdir(parents=True, exist_ok=True)
    return path


def engine_key(model_sha256: str, gpu: str, tensorrt: str, onnxruntime: str, precision: str) -> str:
    """An engine is only valid for one model, GPU, TensorRT and ONNX Runtime build and precision."""
    parts = [model_sha256[:16], gpu, f"trt{tensorrt}", f"ort{onnxruntime}", precision]
    return "-".join("".join(c if c.isalnum() or c == "." else "_" for c in part).lower() for part in parts)


def gpu_identity(cuda_index: int, visible: str | None = None, query=None) -> str:
    """The UUID of the GPU that CUDA calls ``cuda_index``: CUDA numbers only the devices in
    ``CUDA_VISIBLE_DEVICES`` (indices or UUIDs), while nvidia-smi numbers all of them."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES") if visible is None else visible
    rows = [line.split(", ") for line in (query or nvidia_smi)("index,uuid")]
    uuids = {index.strip(): uuid.strip() for index, uuid in (row for row in rows if len(row) == 2)}
    if visible:
        entries = [entry.strip() for entry in visible.split(",") if entry.strip()]
        if cuda_index < len(entries):
            entry = entries[cuda_index]
            return uuids.get(entry) or next((u for u in uuids.values() if u.startswith(entry)), entry)
        return "unknown-gpu"
    return uuids.get(str(cuda_index), "unknown-gpu")


def tensorrt_version() -> str:
    """The TensorRT library version (from its Python package, else libnvinfer itself), or 'unknown'."""
    try:
        import tensorrt

        return tensorrt.__version__
    except ImportError:
        pass
    import ctypes

    for name in ("libnvinfer.so.10", "libnvinfer.so.8", "libnvinfer.so"):
        try:
            version = ctypes.CDLL(name).getInferLibVersion()  # major * 1000 + minor * 100 + patch (TensorRT 8-10)
            return f"{version // 1000}.{version // 100 % 10}.{version % 100}"
        except (OSError, AttributeError):
            continue
    return "unknown"


def ort_version() -> str:
    import onnxruntime

    return onnxruntime.__version__


def write_atomically(target: Path, build) -> None:
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".build-") as scratch:
        tmp = Path(scratch) / target.name
        build(tmp)
        os.replace(tmp, target)


def quantize_int8(package: Package, target: Path) -> None:
    """Static QDQ quantisation of the UNet, calibrated (min/max) on the package's own frames."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    names = package.unet_io.inputs

    class Reader(CalibrationDataReader):
        def __init__(self, feeds):
            self.feeds = iter(feeds)

        def get_next(self):
            return next(self.feeds, None)

    feeds = [dict(zip(names, inputs)) for inputs in calibration_inputs(package)]
    prepared = target.with_suffix(".pre.onnx")
    quant_pre_process(str(single_file_model(package.unet_path, target.parent)), str(prepared), skip_symbolic_shape=True)
    quantize_static(
        str(prepared),
        str(target),
        Reader(feeds),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
    )
    prepared.unlink(missing_ok=True)


def single_file_model(path: Path, scratch: Path) -> Path:
    """``path`` itself, or, for a model whose weights lie in other files (validated to be inside its package), a
    one-file copy in ``scratch``: ONNX Runtime's quantisation tools load the graph from a path of their own and
    cannot follow external weights (issue 24: an 86-line traceback, and the variant built without them)."""
    import onnx

    from lipsync_render.errors import PackageError

    graph = onnx.load(str(path), load_external_data=False)
    if not any(t.data_location == onnx.TensorProto.EXTERNAL for t in graph.graph.initializer):
        return path
    model = onnx.load(str(path))  # the external weights, read from beside the model
    if model.ByteSize() >= onnx.checker.MAXIMUM_PROTOBUF:
        raise PackageError(f"{path} with its external weights is over 2 GB, too large to quantise here.")
    copy = scratch / f"{path.stem}.whole.onnx"
    onnx.save(model, str(copy))
    return copy


def convert_fp16(package: Package, target: Path) -> None:
    """float16 weights and compute with float32 inputs and outputs (needs onnxconverter-common)."""
    try:
        from onnxconverter_common import float16
    except ImportError:
        raise LipsyncError("fp16 needs onnxconverter-common: pip install 'lipsync-render[fp16]'.") from None
    import onnx

    model = float16.convert_float_to_float16(onnx.load(str(package.unet_path)), keep_io_types=True)
    onnx.save(model, str(target))
