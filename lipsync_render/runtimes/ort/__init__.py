"""The ONNX Runtime backend: CPU, CUDA and TensorRT providers; int8 and fp16 UNet variants; IOBinding on GPUs."""

from __future__ import annotations

from typing import TYPE_CHECKING

from lipsync_render.contract import UNET, ModelContract
from lipsync_render.errors import DeviceError
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
        try:
            import onnxruntime  # noqa: F401
        except ImportError:
            return "onnxruntime is not installed (pip install onnxruntime)"
        return None

    def planned_device(self, device: str) -> str:
        return planned_device(device)

    def load(self, package: Package, contract: ModelContract, options: SessionOptions) -> OrtModel:
        if contract is not UNET:  # the audio encoder is light: one thread, fp32, plain runs
            session = make_session(package.audio_encoder_path, options.device, 1)
            return OrtModel(session, contract, AUDIO_ENCODER_BATCH, bind_buffers=False, path=package.audio_encoder_path)
        from lipsync_render.runtimes.ort.variants import engine_cache_dir, unet_for_precision

        if options.precision == "fp16" and planned_device(options.device) == "cpu":  # before converting anything
            raise DeviceError(FP16_NEEDS_GPU)
        path = unet_for_precision(package, options.precision)
        session = make_session(
            path,
            options.device,
            options.threads or default_threads(),
            engine_cache_dir(package, path, options.device),
            options.cuda_graph,
        )
        check_precision(options.precision, session)
        return OrtModel(session, contract, options.batch_size or 1, path=package.unet_path)


BACKEND = OnnxRuntimeBackend()
