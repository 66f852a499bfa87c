"""The PyTorch backend (``--backend torch``, the optional ``torch`` extra): the SyncTalk_2D networks as torch
modules with the package's ONNX weights, on CUDA in fp32, fp16 or bf16 (channels-last, constant padded batches,
optionally one captured CUDA graph), and on the CPU in fp32.

For GPU hosts where ``onnxruntime-gpu`` cannot be installed but PyTorch is there (SyncTalk_2D users have it). The
UNet takes the uint8 328 crops and gives uint8 predictions (contract ``UNET_UINT8``), so only a quarter of the
float bytes cross the bus and the host does no float work.
"""

from __future__ import annotations

import importlib.util
import os
from typing import TYPE_CHECKING

from lipsync_render.contract import UNET, UNET_UINT8, ModelContract
from lipsync_render.devices import DeviceRequest, cuda_driver_present
from lipsync_render.errors import DeviceError

if TYPE_CHECKING:
    from lipsync_render.options import SessionOptions
    from lipsync_render.package import Package
    from lipsync_render.runtimes.pytorch.model import TorchModel

AUDIO_ENCODER_BATCH = 64
CUDA_PRECISIONS = ("fp32", "fp16", "bf16")


class TorchBackend:
    """Builds the fixed architectures in torch; refuses a graph that is not one of them (PackageError)."""

    name = "torch"

    def unavailable_reason(self) -> str | None:
        # found, not imported: importing torch takes seconds and loads its CUDA libraries into the process
        if importlib.util.find_spec("torch") is None:
            return "PyTorch is not installed (pip install 'lipsync-render[torch]')"
        return None

    def planned_device(self, device: str) -> str:
        request = DeviceRequest.parse(device)
        if request.kind == "tensorrt":
            raise DeviceError("The torch backend does not run TensorRT; use --device cuda.")
        if request.kind == "cpu" or (request.kind == "auto" and not cuda_driver_present()):
            return "cpu"
        if not cuda_driver_present():
            raise DeviceError("CUDA was requested but no NVIDIA driver was found on this machine.")
        import torch

        if request.kind == "auto" and not torch.cuda.is_available():
            return "cpu"
        if not torch.cuda.is_available():
            raise DeviceError(f"CUDA was requested but this PyTorch build cannot use a GPU here ({_cuda_problem()}).")
        if request.index >= torch.cuda.device_count():
            raise DeviceError(
                f"CUDA device {request.index} was requested but PyTorch sees {torch.cuda.device_count()} GPU(s)."
            )
        return "cuda"

    def uint8_unet(self, device_kind: str) -> bool:
        return True

    def load(self, package: Package, contract: ModelContract, options: SessionOptions) -> TorchModel:
        import torch

        from lipsync_render.runtimes.pytorch import networks
        from lipsync_render.runtimes.pytorch.model import TorchModel
        from lipsync_render.runtimes.pytorch.onnx_weights import network_from_onnx

        kind = self.planned_device(options.device)
        device = (
            torch.device("cuda", DeviceRequest.parse(options.device).index) if kind == "cuda" else torch.device("cpu")
        )
        is_unet = contract.key == UNET.key
        precision = options.precision if is_unet else "fp32"
        check_precision(precision, kind)
        if kind == "cpu":
            torch.set_num_threads(options.threads or os.cpu_count() or 1)
        else:
            torch.backends.cudnn.benchmark = True  # autotuned at warm-up; the shape never changes
            # fp32 means fp32: no TF32 convolutions or matmuls (torch allows TF32 convolutions by default)
            torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = precision != "fp32"
        path = package.unet_path if is_unet else package.audio_encoder_path
        network = network_from_onnx(path, UNET if is_unet else contract)
        dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[precision]
        channels_last = kind == "cuda" and is_unet
        network = network.to(
            device=device, dtype=dtype, memory_format=torch.channels_last if channels_last else torch.contiguous_format
        )
        wrapper = networks.Uint8Unet if contract is UNET_UINT8 else networks.FloatIO
        module = wrapper(network, dtype, channels_last).to(device).eval()
        batch = (options.batch_size or 1) if is_unet else AUDIO_ENCODER_BATCH
        graph = options.cuda_graph and is_unet
        return TorchModel(module, contract, batch, device, precision, graph, path)


def check_precision(precision: str, device_kind: str) -> None:
    """fp32, fp16 and bf16 on CUDA; fp32 on the CPU (where ONNX Runtime and OpenVINO are the fast backends)."""
    allowed = CUDA_PRECISIONS if device_kind == "cuda" else ("fp32",)
    if precision not in allowed:
        where = "CUDA" if device_kind == "cuda" else "the CPU"
        raise DeviceError(
            f"The torch backend runs {', '.join(allowed)} on {where}, not {precision}; reduced precisions on the "
            "CPU and int8 are --backend onnxruntime or openvino."
        )


def _cuda_problem() -> str:
    """Why torch cannot use CUDA: a CPU-only build, or no driver or GPU."""
    import torch

    if torch.version.cuda is None:
        return "it is a CPU-only build; install a CUDA build of torch"
    return f"built for CUDA {torch.version.cuda}, but no usable NVIDIA GPU or driver was found"


BACKEND = TorchBackend()
