"""The OpenVINO backend: the package's ONNX files on the CPU in fp32, bf16 (AMX or AVX-512 BF16) or int8.

OpenVINO reads the ONNX files as they are; int8 runs the package's own QDQ model (static quantisation calibrated on
its frames, shared with the ONNX Runtime backend). The UNet runs at the planned batch as a static-shape model
(:func:`static_batch_model`). Compiled models are cached in the package's cache folder (or the user cache when the
package is read-only) and compiled by path, so a later start imports the cached blob without parsing the model.
Only OpenVINO's runtime is used; its converter, the one part that has telemetry, is never even imported.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from lipsync_render.contract import UNET, UNET_UINT8, ModelContract, require_output_shape
from lipsync_render.devices import DeviceRequest
from lipsync_render.errors import DeviceError
from lipsync_render.paths import file_identity
from lipsync_render.runtimes.base import package_found

if TYPE_CHECKING:
    from lipsync_render.options import SessionOptions
    from lipsync_render.package import Package

log = logging.getLogger(__name__)

# ``import openvino`` loads its model-conversion tools, which send a usage event (a DNS lookup and a UDP packet from
# a forked child) unless its telemetry package is missing: a renderer talks to no network, so hide that package and
# OpenVINO takes its own silent stub. Every import of openvino in this tool goes through this module.
sys.modules.setdefault("openvino_telemetry", None)
CONVERTER = "openvino.tools.ovc"


def openvino_module():
    """``import openvino`` without its model converter, which nothing here uses (``openvino/__init__`` imports it
    only if it can: 0.024 s of every start); DeviceError when the installed package cannot be imported. The
    converter stays importable by name for anything else in the process."""
    hidden = CONVERTER not in sys.modules
    if hidden:
        sys.modules[CONVERTER] = None
    try:
        import openvino
    except ImportError as exc:
        raise DeviceError(f"The openvino package is installed but cannot be imported ({exc}).") from None
    finally:
        if hidden and CONVERTER in sys.modules and sys.modules[CONVERTER] is None:
            del sys.modules[CONVERTER]
    return openvino


# OpenVINO's model cache sets the process's locale to "C" around its blob files and puts it back, not thread-safely:
# two loads at once in one process left it at "C" for good (measured: 5 of 6 concurrent pairs), and with it every
# later text file opened without an explicit encoding read as ASCII. Loads in this process take turns.
CACHE_LOCK = threading.Lock()
HINTS = {"fp32": "f32", "bf16": "bf16", "int8": "f32"}  # int8 comes from the QDQ model itself
AUDIO_ENCODER_BATCH = 64


@functools.cache
def cpu_capabilities() -> list[str]:
    ov = openvino_module()
    return list(ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"))


def supported_precisions() -> tuple[str, ...]:
    """The UNet precisions OpenVINO runs fast on this CPU: bf16 only with AMX or AVX-512 BF16."""
    return ("fp32", "bf16", "int8") if "BF16" in cpu_capabilities() else ("fp32", "int8")


class OpenVinoModel:
    """A compiled model and one infer request, run in batches of ``batch_size``."""

    io_on_device = False
    constant_shape = False
    device = "cpu"

    def __init__(self, compiled, contract: ModelContract, batch_size: int, path: Path, precision: str):
        self.compiled = compiled
        self.request = compiled.create_infer_request()
        self.contract = contract
        fixed = compiled.inputs[0].get_partial_shape()[0]
        # a model exported with a fixed batch axis runs at exactly that size, short batches padded (as on ORT)
        self.model_batch = fixed.get_length() if fixed.is_static else None
        self.constant_shape = self.model_batch is not None
        self.batch_size = self.model_batch or batch_size
        self.path = path
        self.input_names = [port.any_name for port in compiled.inputs]
        self.providers = [f"OpenVINO CPU {precision}"]

    def run(self, *inputs: np.ndarray) -> np.ndarray:
        n = len(inputs[0])
        result = np.empty((n, *self.contract.output), np.float32)
        for first in range(0, n, self.batch_size):
            chunk = [np.ascontiguousarray(x[first : first + self.batch_size], np.float32) for x in inputs]
            count = len(chunk[0])
            if self.constant_shape and count < self.batch_size:
                chunk = [np.concatenate([x, np.zeros((self.batch_size - count, *x.shape[1:]), x.dtype)]) for x in chunk]
            try:
                # shared, not copied: the inputs live through this synchronous call, and the output is copied
                # out below before the next call reuses its buffer (0.3-0.7 ms a frame less at 720p on 2 cores)
                outputs = self.request.infer(dict(zip(self.input_names, chunk)), share_inputs=True, share_outputs=True)
                output = outputs[self.compiled.output(0)]
            except RuntimeError as exc:
                raise DeviceError(
                    f"OpenVINO could not run {self.path} at batch {len(chunk[0])} ({_brief(exc)})."
                ) from None
            output = require_output_shape(np.asarray(output), len(chunk[0]), self.contract, self.path)
            result[first : first + count] = output[:count]
        return result

    def warm_up(self) -> None:
        self.run(*(np.zeros((self.batch_size, *shape), np.float32) for shape in self.contract.inputs))


def compile_config(precision: str, threads: int) -> dict:
    """OpenVINO CPU settings: the precision hint, the thread count, latency mode (one request at a time)."""
    return {
        "INFERENCE_PRECISION_HINT": HINTS[precision],
        "INFERENCE_NUM_THREADS": threads,
        "PERFORMANCE_HINT": "LATENCY",
    }


def _brief(exc: Exception) -> str:
    return " ".join(str(exc).split())[:200]


def _usable_folder(folder: Path) -> Path | None:
    """``folder``, made if missing; None (with a warning: the models then compile afresh, at a dynamic batch) when
    something else is in its place or it cannot be made."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        if folder.is_dir() and not folder.is_symlink():
            return folder
    except OSError:
        pass
    log.warning("The OpenVINO cache folder %s cannot be used; compiling without a cache.", folder)
    return None


def static_batch_model(core, path: Path, batch: int, folder: Path) -> Path:
    """The model at ``path`` with its batch axis fixed at ``batch``, as OpenVINO IR in ``folder`` (written once).

    A dynamic batch axis makes OpenVINO compile shape-agnostic kernels and re-plan memory on every call: the UNet
    at batch 1 in bf16 on 2 cores took 24.0 ms and 47.7 CPU ms a frame dynamic, 21.5 ms and 42.9 static (the
    true-architecture UNet). Batches shorter than ``batch`` are padded (:class:`OpenVinoModel`). The IR keeps the
    weights in fp32, so the compiled model is the one the ONNX file gives. Concurrent first loads each write
    their own temporary pair, then rename it into place (bin first, so an IR file always has its weights).
    """
    ov = openvino_module()
    # named for the source file's identity too: a package without checksums keeps its digest when a model changes
    identity = hashlib.sha256(repr(file_identity(path)).encode()).hexdigest()[:12]
    target = folder / f"{path.stem}.batch{batch}.{identity}.xml"
    if target.is_file() and target.with_suffix(".bin").is_file():
        return target
    model = core.read_model(str(path))
    shapes = {}
    for port in model.inputs:
        dims = list(port.get_partial_shape())
        if not all(dim.is_static for dim in dims[1:]):
            return path  # nothing more to fix than the batch
        shapes[port.any_name] = [batch, *(dim.get_length() for dim in dims[1:])]
    model.reshape(shapes)
    temporary = folder / f".{target.stem}.{os.getpid()}.{threading.get_native_id()}.xml"
    try:
        ov.save_model(model, str(temporary), compress_to_fp16=False)
        os.replace(temporary.with_suffix(".bin"), target.with_suffix(".bin"))
        os.replace(temporary, target)
    except (OSError, RuntimeError) as exc:  # a full disk: slower, not wrong
        log.warning("Could not write %s (%s); running %s at a dynamic batch.", target, exc, path.name)
        return path
    finally:
        temporary.unlink(missing_ok=True)
        temporary.with_suffix(".bin").unlink(missing_ok=True)
    return target


class OpenVinoBackend:
    """CPU only; asked for a GPU it says so rather than run elsewhere."""

    name = "openvino"

    def unavailable_reason(self) -> str | None:
        if not package_found("openvino"):
            return "the openvino package is not installed (pip install openvino)"
        return None

    def planned_device(self, device: str) -> str:
        return "cpu"

    def uint8_unet(self, device_kind: str) -> bool:
        return False

    def load(self, package: Package, contract: ModelContract, options: SessionOptions) -> OpenVinoModel:
        ov = openvino_module()
        if contract is UNET_UINT8:
            raise DeviceError("The openvino backend takes the float UNet input only; use --unet-io float.")

        if DeviceRequest.parse(options.device).kind not in ("auto", "cpu"):
            raise DeviceError(f"The openvino backend runs on the CPU; it cannot use --device {options.device}.")
        precision = options.precision if contract is UNET else "fp32"
        if precision not in supported_precisions():
            raise DeviceError(
                f"OpenVINO cannot run {precision} on this CPU (bf16 needs AMX or AVX-512 BF16, fp16 a "
                f"GPU); it runs {', '.join(supported_precisions())} here."
            )
        path = self._model_path(package, contract, precision)
        from lipsync_render.package.cache import cache_path

        core = ov.Core()
        # Keyed by the manifest's digest (which holds every file's checksum), so a changed package never meets a
        # stale blob; within it OpenVINO keys by model path and options and checks the file's size and time.
        folder = _usable_folder(cache_path(package, "openvino", package.checksum[:16]))
        if folder is not None:
            core.set_property({"CACHE_DIR": str(folder)})
        threads = 1 if contract is not UNET else options.threads or os.cpu_count() or 1
        config = compile_config(precision, threads)
        batch = (options.batch_size or 1) if contract is UNET else AUDIO_ENCODER_BATCH
        with CACHE_LOCK:
            compiled = self._compile(core, path, contract, package, batch, folder, config)
        return OpenVinoModel(compiled, contract, batch, path, precision)

    @staticmethod
    def _compile(core, path: Path, contract: ModelContract, package: Package, batch: int, folder, config: dict):
        try:
            source = path
            if contract is UNET and not package.unet_io.fixed_batch and folder is not None:
                source = static_batch_model(core, path, batch, folder)
            # by path, not a read model: a cached blob is then imported without parsing the model file at all
            # (0.09 s against 0.17-0.22 s for the 523-frame package's UNet, cache warm)
            return core.compile_model(str(source), "CPU", config)
        except RuntimeError as exc:
            if source == path:
                raise DeviceError(f"OpenVINO could not compile {path} ({_brief(exc)}).") from None
            # a damaged cache entry costs speed, never the render
            log.warning("OpenVINO could not compile %s (%s); compiling %s as it is.", source, _brief(exc), path.name)
        try:
            return core.compile_model(str(path), "CPU", config)
        except RuntimeError as again:
            raise DeviceError(f"OpenVINO could not compile {path} ({_brief(again)}).") from None

    @staticmethod
    def _model_path(package: Package, contract: ModelContract, precision: str) -> Path:
        if contract is not UNET:
            return package.audio_encoder_path
        if precision == "int8":
            from lipsync_render.runtimes.ort.variants import unet_for_precision

            return unet_for_precision(package, "int8")
        return package.unet_path


BACKEND = OpenVinoBackend()
