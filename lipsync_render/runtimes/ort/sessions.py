"""ONNX Runtime sessions: providers for a device request, verified after creation, never a silent fallback.

ONNX Runtime quietly drops to the CPU when a requested GPU provider cannot load, so every session
is checked with ``session.get_providers()`` after creation.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import sys
from pathlib import Path

from lipsync_render.devices import DeviceRequest, cuda_driver_present
from lipsync_render.errors import DeviceError

log = logging.getLogger(__name__)

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"
TENSORRT = "TensorrtExecutionProvider"


def onnxruntime_module():
    """``import onnxruntime``; DeviceError when the installed package cannot be imported."""
    try:
        import onnxruntime
    except ImportError as exc:
        raise DeviceError(f"onnxruntime is installed but cannot be imported ({exc}).") from None
    return onnxruntime


def available_providers() -> list[str]:
    return list(onnxruntime_module().get_available_providers())


def provider_plan(
    request: DeviceRequest,
    available: list[str],
    driver: bool,
    cache_dir: Path | None = None,
    cuda_graph: bool = False,
    fp16: bool = False,
) -> list:
    """The providers to ask ONNX Runtime for, most preferred first (CPU always last).

    ``cuda_graph`` goes to whichever provider owns the nodes: the CUDA provider's ``enable_cuda_graph``, or under
    TensorRT its own ``trt_cuda_graph_enable`` (the CUDA one cannot capture nodes TensorRT runs). TensorRT builds
    fp16 engines only when ``fp16`` was asked for, so an fp32 request stays fp32.
    """
    cuda_options = {"device_id": request.index}
    if cuda_graph and request.kind != "tensorrt":
        cuda_options["enable_cuda_graph"] = "1"  # replays one captured graph; needs IOBinding (OrtModel)
    cuda = (CUDA, cuda_options)
    if request.kind == "cpu":
        return [CPU]
    if request.kind == "auto":
        return [cuda, CPU] if (CUDA in available and driver) else [CPU]
    if request.kind == "cuda":
        if CUDA not in available:
            raise DeviceError(
                "CUDA was requested but this ONNX Runtime build has no CUDA provider (install onnxruntime-gpu)."
            )
        if not driver:
            raise DeviceError("CUDA was requested but no NVIDIA driver was found on this machine.")
        return [cuda, CPU]
    if TENSORRT not in available or not driver:
        raise DeviceError("TensorRT was requested but the TensorRT provider or an NVIDIA driver is not available here.")
    trt_options = {"device_id": request.index, "trt_fp16_enable": fp16, "trt_engine_cache_enable": True}
    if cuda_graph:
        trt_options["trt_cuda_graph_enable"] = True
    if cache_dir is not None:
        trt_options["trt_engine_cache_path"] = str(cache_dir)
    return [(TENSORRT, trt_options), cuda, CPU]


def planned_device(device: str) -> str:
    """The device kind a request will run on if its providers load: 'cpu', 'cuda' or 'tensorrt'."""
    request = DeviceRequest.parse(device)
    driver = cuda_driver_present()
    # a plan that can only be the CPU asks no provider list, so planning never imports ONNX Runtime for it (0.04 s
    # of a start that then renders on OpenVINO)
    cpu_only = request.kind == "cpu" or (request.kind == "auto" and not driver)
    first = provider_plan(request, [] if cpu_only else available_providers(), driver)[0]
    name = first[0] if isinstance(first, tuple) else first
    return {CUDA: "cuda", TENSORRT: "tensorrt"}.get(name, "cpu")


def check_providers(request: DeviceRequest, plan: list, actual: list[str], model: Path) -> None:
    """Raise when an explicitly requested accelerator is not what the session really runs on."""
    wanted = plan[0][0] if isinstance(plan[0], tuple) else plan[0]
    if request.kind in ("cuda", "tensorrt") and wanted not in actual:
        raise DeviceError(
            f"{request.kind} was requested but ONNX Runtime fell back to {actual[0]} for {model.name}; "
            "check the CUDA/cuDNN/TensorRT libraries with 'lipsync doctor'."
        )


def make_session(
    model: Path,
    device: str = "auto",
    threads: int = 0,
    cache_dir: Path | None = None,
    cuda_graph: bool = False,
    fp16: bool = False,
):
    """An InferenceSession on the requested device, verified to really run there."""
    ort = onnxruntime_module()

    request = DeviceRequest.parse(device)
    plan = provider_plan(request, available_providers(), cuda_driver_present(), cache_dir, cuda_graph, fp16)
    if plan[0] != CPU:
        preload_gpu_libraries()
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads > 0:
        options.intra_op_num_threads = threads
    # Spinning workers steal the cores that the other pipeline stages need; measured 2x slower with it on.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if request.kind == "auto":
        options.log_severity_level = 4  # a failed CUDA probe under 'auto' is expected; we report it ourselves
    try:
        session = ort.InferenceSession(str(model), sess_options=options, providers=plan)
    except Exception as exc:  # ORT raises its own exception types for unloadable models and providers
        raise DeviceError(f"ONNX Runtime could not load {model} ({str(exc).splitlines()[0][:200]}).") from None
    actual = session.get_providers()
    check_providers(request, plan, actual, model)
    if request.kind == "auto" and len(plan) > 1 and actual[0] == CPU:
        log.warning("CUDA is present but ONNX Runtime could not use it for %s; running on the CPU.", model.name)
    return session


FP16_NEEDS_GPU = "fp16 needs a CUDA or TensorRT device; on the CPU use --precision int8 or fp32."


@functools.cache
def preload_gpu_libraries() -> None:
    """Load the CUDA and cuDNN libraries the installed onnxruntime-gpu was built for, from the nvidia-* pip
    packages when they are there (``onnxruntime.preload_dlls``); without this ONNX Runtime finds only system-wide
    installs and quietly falls back to the CPU. What it prints goes to stderr, so stdout stays JSON-clean."""
    import onnxruntime as ort

    if not hasattr(ort, "preload_dlls"):  # older builds: only the system's search path
        return
    with contextlib.redirect_stdout(sys.stderr):
        try:
            ort.preload_dlls()
        except Exception as exc:  # a missing library is reported when the session falls back, not here
            log.debug("onnxruntime.preload_dlls failed: %s", exc)


def check_precision(precision: str, session) -> None:
    """fp16 only where it pays: on CUDA or TensorRT, never silently on the CPU."""
    if precision == "fp16" and execution_device(session) == "cpu":
        raise DeviceError(FP16_NEEDS_GPU)


def execution_device(session) -> str:
    """'cuda', 'tensorrt' or 'cpu': where a session really runs."""
    first = session.get_providers()[0]
    return {CUDA: "cuda", TENSORRT: "tensorrt"}.get(first, "cpu")


def default_threads() -> int:
    """ONNX Runtime threads: every core (the other stages are light and mostly wait)."""
    return os.cpu_count() or 1
