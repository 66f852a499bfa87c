"""ONNX Runtime sessions: device selection that never falls back silently, and batched UNet runs.

ONNX Runtime quietly drops to the CPU when a requested GPU provider cannot load, so every session
is checked with ``session.get_providers()`` after creation.
"""

from __future__ import annotations

import ctypes
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lipsync_render.errors import DeviceError

log = logging.getLogger(__name__)

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"
TENSORRT = "TensorrtExecutionProvider"
UNET_VISUAL_SHAPE = (6, 320, 320)
UNET_AUDIO_SHAPE = (32, 16, 16)
UNET_OUTPUT_SHAPE = (3, 320, 320)
DEVICE_PATTERN = re.compile(r"^(auto|cpu|cuda(:\d+)?|tensorrt(:\d+)?)$")


@dataclass(frozen=True)
class DeviceRequest:
    """What the user asked for: kind is auto, cpu, cuda or tensorrt; index is the GPU number."""

    kind: str
    index: int = 0

    @classmethod
    def parse(cls, text: str) -> "DeviceRequest":
        text = text.strip().lower()
        if not DEVICE_PATTERN.match(text):
            raise DeviceError(f"Unknown device '{text}': use auto, cpu, cuda, cuda:N or tensorrt.")
        kind, _, index = text.partition(":")
        return cls(kind, int(index or 0))


def available_providers() -> list[str]:
    import onnxruntime as ort

    return list(ort.get_available_providers())


def cuda_driver_present() -> bool:
    """Whether the NVIDIA driver library loads: a cheap probe before asking ONNX Runtime for CUDA."""
    for name in ("libcuda.so.1", "libcuda.so", "nvcuda.dll"):
        try:
            ctypes.CDLL(name)
            return True
        except OSError:
            continue
    return False


def provider_plan(request: DeviceRequest, available: list[str], driver: bool, cache_dir: Path | None = None,
                  cuda_graph: bool = False) -> list:
    """The providers to ask ONNX Runtime for, most preferred first (CPU always last)."""
    cuda_options = {"device_id": request.index}
    if cuda_graph:
        cuda_options["enable_cuda_graph"] = "1"  # replays one captured graph; needs IOBinding (UNetRunner)
    cuda = (CUDA, cuda_options)
    if request.kind == "cpu":
        return [CPU]
    if request.kind == "auto":
        return [cuda, CPU] if (CUDA in available and driver) else [CPU]
    if request.kind == "cuda":
        if CUDA not in available:
            raise DeviceError("CUDA was requested but this ONNX Runtime build has no CUDA provider (install onnxruntime-gpu).")
        if not driver:
            raise DeviceError("CUDA was requested but no NVIDIA driver was found on this machine.")
        return [cuda, CPU]
    if TENSORRT not in available or not driver:
        raise DeviceError("TensorRT was requested but the TensorRT provider or an NVIDIA driver is not available here.")
    trt_options = {"device_id": request.index, "trt_fp16_enable": True, "trt_engine_cache_enable": True}
    if cache_dir is not None:
        trt_options["trt_engine_cache_path"] = str(cache_dir)
    return [(TENSORRT, trt_options), cuda, CPU]


def planned_device(device: str) -> str:
    """The device kind a request will run on if its providers load: 'cpu', 'cuda' or 'tensorrt'."""
    request = DeviceRequest.parse(device)
    first = provider_plan(request, available_providers(), cuda_driver_present())[0]
    name = first[0] if isinstance(first, tuple) else first
    return {CUDA: "cuda", TENSORRT: "tensorrt"}.get(name, "cpu")


def check_providers(request: DeviceRequest, plan: list, actual: list[str], model: Path) -> None:
    """Raise when an explicitly requested accelerator is not what the session really runs on."""
    wanted = plan[0][0] if isinstance(plan[0], tuple) else plan[0]
    if request.kind in ("cuda", "tensorrt") and wanted not in actual:
        raise DeviceError(f"{request.kind} was requested but ONNX Runtime fell back to {actual[0]} for {model.name}; "
                          "check the CUDA/cuDNN/TensorRT libraries with 'lipsync doctor'.")


def make_session(model: Path, device: str = "auto", threads: int = 0, cache_dir: Path | None = None,
                 cuda_graph: bool = False):
    """An InferenceSession on the requested device, verified to really run there."""
    import onnxruntime as ort

    request = DeviceRequest.parse(device)
    plan = provider_plan(request, available_providers(), cuda_driver_present(), cache_dir, cuda_graph)
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


def nvidia_smi(fields: str, index: int | None = None) -> list[str]:
    """One line per GPU of ``nvidia-smi --query-gpu=FIELDS`` (CSV, no header); empty without NVIDIA tools."""
    import shutil
    import subprocess

    if shutil.which("nvidia-smi") is None:
        return []
    command = ["nvidia-smi", f"--query-gpu={fields}", "--format=csv,noheader"]
    if index is not None:
        command += ["-i", str(index)]
    try:
        out = subprocess.run(command, capture_output=True, text=True, timeout=15, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip() for line in out.splitlines() if line.strip()]


def gpu_name(index: int = 0) -> str | None:
    """The name of NVIDIA GPU ``index``, or None when there is none."""
    names = nvidia_smi("name", index)
    return names[0] if names else None


def check_precision(precision: str, session) -> None:
    """fp16 only where it pays: on CUDA or TensorRT, never silently on the CPU."""
    if precision == "fp16" and execution_device(session) == "cpu":
        raise DeviceError("fp16 needs a CUDA or TensorRT device; on the CPU use --precision int8 or fp32.")


def execution_device(session) -> str:
    """'cuda', 'tensorrt' or 'cpu': where a session really runs."""
    first = session.get_providers()[0]
    return {CUDA: "cuda", TENSORRT: "tensorrt"}.get(first, "cpu")


class UNetRunner:
    """Runs the UNet in batches.

    On a GPU every run has one constant shape, through IOBinding into preallocated device buffers (the same
    shapes and addresses every time: what CUDA graphs and TensorRT need); a short last batch is padded and the
    padding dropped. On the CPU a short batch runs at its own size, since padding would only burn cores.
    A model exported with a fixed batch axis (e.g. batch 1) is run in chunks of that size.
    """

    def __init__(self, session, batch_size: int):
        inputs = session.get_inputs()
        self.session = session
        self.input_names = [inputs[0].name, inputs[1].name]
        self.output_name = session.get_outputs()[0].name
        fixed = inputs[0].shape[0]
        self.model_batch = fixed if isinstance(fixed, int) and fixed > 0 else None
        self.step = self.model_batch or batch_size
        self.constant_shape = self.model_batch is not None or execution_device(session) != "cpu"
        self.buffers = self._bind() if self.constant_shape else None

    def _bind(self):
        """Preallocated (visual, audio, output) OrtValues on the session's device, bound once."""
        import onnxruntime as ort

        device, index = device_of(self.session)
        shapes = [(self.step, *UNET_VISUAL_SHAPE), (self.step, *UNET_AUDIO_SHAPE), (self.step, *UNET_OUTPUT_SHAPE)]
        values = [ort.OrtValue.ortvalue_from_shape_and_type(shape, np.float32, device, index) for shape in shapes]
        self.binding = self.session.io_binding()
        self.binding.bind_ortvalue_input(self.input_names[0], values[0])
        self.binding.bind_ortvalue_input(self.input_names[1], values[1])
        self.binding.bind_ortvalue_output(self.output_name, values[2])
        return values

    def run(self, visual: np.ndarray, audio: np.ndarray) -> np.ndarray:
        """UNet output (n, 3, 320, 320) float32 for n visual/audio inputs."""
        n = len(visual)
        if not self.constant_shape:
            if n <= self.step:
                return self.session.run([self.output_name], dict(zip(self.input_names, (visual, audio))))[0]
            return np.concatenate([self.run(visual[i:i + self.step], audio[i:i + self.step])
                                   for i in range(0, n, self.step)])
        result = np.empty((n, *UNET_OUTPUT_SHAPE), np.float32)
        visual_buffer, audio_buffer, output_buffer = self.buffers
        for first in range(0, n, self.step):
            count = min(self.step, n - first)
            visual_buffer.update_inplace(_padded(visual[first:first + count], self.step))
            audio_buffer.update_inplace(_padded(audio[first:first + count], self.step))
            self.session.run_with_iobinding(self.binding)
            result[first:first + count] = output_buffer.numpy()[:count]
        return result

    def warm_up(self) -> None:
        """One full-size run on zeros: allocation, kernel choice and TensorRT engine builds happen now."""
        zeros = np.zeros((self.step, *UNET_VISUAL_SHAPE), np.float32)
        self.run(zeros, np.zeros((self.step, *UNET_AUDIO_SHAPE), np.float32))


def _padded(batch: np.ndarray, size: int) -> np.ndarray:
    """A C-contiguous float32 batch of exactly ``size`` rows (zeros appended)."""
    batch = np.ascontiguousarray(batch, dtype=np.float32)
    if len(batch) == size:
        return batch
    return np.concatenate([batch, np.zeros((size - len(batch), *batch.shape[1:]), np.float32)])


def device_of(session) -> tuple[str, int]:
    """The OrtValue device ('cuda' or 'cpu') and index a session runs on."""
    if execution_device(session) == "cpu":
        return "cpu", 0
    options = session.get_provider_options().get(CUDA) or session.get_provider_options().get(TENSORRT) or {}
    return "cuda", int(options.get("device_id", 0))


def default_threads() -> int:
    """ONNX Runtime threads: every core (the other stages are light and mostly wait)."""
    return os.cpu_count() or 1
