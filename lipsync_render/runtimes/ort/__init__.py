"""The ONNX Runtime backend: CPU, CUDA and TensorRT providers; int8 and fp16 UNet variants; IOBinding on GPUs."""

from __future__ import annotations

from typing import TYPE_CHECKING

from lipsync_render.contract import UNET, UNET_UINT8, ModelContract
from lipsync_render.errors import DeviceError
from lipsync_render.runtimes.base import package_found
from lipsync_render.runtimes.ort.runner import OrtModel
from lipsync_render.runtimes.ort.sessions import (
    FP16_NEEDS_GPU,
    check_precision,
    default_threads,
    make_session,
    planned_device,
)

if TYPE_CHECKING:
    from lipsync_render.options import SessionOptions
    from lipsync_render.package import Package

AUDIO_ENCODER_BATCH = 64  # windows per run: bounds the encoder's memory whatever the audio length


class OnnxRuntimeBackend:
    """Runs the package's ONNX files as they are (fp32), or their cached int8/fp16 variants."""

    name = "onnxruntime"

    def unavailable_reason(self) -> str | None:
        if not package_found("onnxruntime"):
            return "onnxruntime is not installed (pip install onnxruntime)"
        return None

    def planned_device(self, device: str) -> str:
        return planned_device(device)

    def uint8_unet(self, device_kind: str) -> bool:
        """The uint8 wrapper runs on the CPU and CUDA providers; TensorRT keeps the plain float graph."""
        return device_kind in ("cpu", "cuda")

    def load(self, package: Package, contract: ModelContract, options: SessionOptions) -> OrtModel:
        if contract.key != UNET.key:  # the audio encoder is light: one thread, fp32, plain runs
            session = make_session(package.audio_encoder_path, audio_encoder_device(options.device), 1)
            return OrtModel(session, contract, AUDIO_ENCODER_BATCH, bind_buffers=False, path=package.audio_encoder_path)
        from lipsync_render.runtimes.ort.variants import engine_cache_dir, unet_for_precision

        device = planned_device(options.device)
        if options.precision == "fp16" and device == "cpu":  # before converting anything
            raise DeviceError(FP16_NEEDS_GPU)
        if options.precision not in ("fp32", "fp16", "int8"):
            raise DeviceError(
                f"ONNX Runtime does not run {options.precision} here; use --backend openvino for "
                "bf16, or --precision auto to let the measurement choose."
            )
        # TensorRT builds its own fp16 engine from the fp32 graph; the other providers run a converted model.
        on_tensorrt = device == "tensorrt"
        path = package.unet_path if on_tensorrt else unet_for_precision(package, options.precision)
        if contract is UNET_UINT8:
            if not self.uint8_unet(device):
                raise DeviceError(
                    "ONNX Runtime takes uint8 crops on the CPU and CUDA, not TensorRT; use --unet-io float."
                )
            from lipsync_render.runtimes.ort.uint8_io import uint8_unet

            path = uint8_unet(package, path)
        session = make_session(
            path,
            options.device,
            options.threads or default_threads(),
            engine_cache_dir(package, path, options.device, options.precision),
            options.cuda_graph,
            fp16=on_tensorrt and options.precision == "fp16",
        )
        check_precision(options.precision, session)
        return OrtModel(session, contract, options.batch_size or 1, path=package.unet_path)


def audio_encoder_device(device: str) -> str:
    """The audio encoder runs on CUDA when the UNet runs on TensorRT: its batches vary in length (the last chunk
    is short), and TensorRT would rebuild an engine for each new shape mid-render."""
    return device.replace("tensorrt", "cuda")


BACKEND = OnnxRuntimeBackend()
