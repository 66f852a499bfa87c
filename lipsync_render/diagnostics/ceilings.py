"""Stage ceilings for ``lipsync bench``: how fast the UNet alone and the video encoder alone can go, and the
package with a near-free stand-in UNet, so a row can say which stage bounds the render."""

from __future__ import annotations

import statistics
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from lipsync_render.contract import ModelContract, ModelIO, read_model_io
from lipsync_render.options import RenderOptions
from lipsync_render.package import Package
from lipsync_render.rendering.frame_order import frame_schedule
from lipsync_render.runtimes import LoadedModel


def unet_only_fps(unet: LoadedModel, batch_size: int, batches: int, seed: int = 0) -> float:
    """UNet frames per second on random inputs of the batch shape (in the UNet's own input types: float inputs,
    or uint8 crops): median of ``batches`` runs after one warm-up."""
    inputs = random_inputs(unet.contract, batch_size, np.random.default_rng(seed))
    unet.run(*inputs)
    seconds = []
    for _ in range(max(1, batches)):
        tick = time.perf_counter()
        unet.run(*inputs)
        seconds.append(time.perf_counter() - tick)
    return batch_size / statistics.median(seconds)


def random_inputs(contract: ModelContract, batch_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """One batch of random inputs for a model contract: uint8 pixels, or floats in [0, 1)."""
    inputs = []
    for index, shape in enumerate(contract.inputs):
        if contract.input_dtype(index) == np.uint8:
            inputs.append(rng.integers(0, 256, (batch_size, *shape), dtype=np.uint8))
        else:
            inputs.append(rng.random((batch_size, *shape), dtype=np.float32))
    return inputs


def tiny_unet_twin(package: Package, workdir: Path) -> Package:
    """The package with its UNet swapped for the tiny stand-in (same frames, rectangles, encoder, features)."""
    from lipsync_render.synth.avatar import build_models

    path = workdir / "tiny_unet.onnx"
    if not path.exists():
        path.write_bytes(build_models(tiny=True)[0])
    inputs, outputs = read_model_io(path)
    io_names = ModelIO([name for name, _ in inputs], [name for name, _ in outputs])
    return replace(package, unet_path=path, unet_io=io_names)


def encode_only_fps(package: Package, frames: int, codec: str, options: RenderOptions, path: Path) -> float:
    """Frames per second of bare H.264 encoding (time in the encoder only) of the frames a render would show."""
    import cv2

    from lipsync_render.media.video import VideoTarget, VideoWriter

    target = VideoTarget(
        path, package.width, package.height, package.fps, encoder=codec, crf=options.crf, preset=options.preset
    )
    writer = VideoWriter(target)
    busy = 0.0
    try:
        for index in frame_schedule(frames, package.frame_count):
            planes = cv2.cvtColor(np.asarray(package.frames[index]), cv2.COLOR_BGR2YUV_I420)
            tick = time.perf_counter()
            writer.write_i420(planes)
            busy += time.perf_counter() - tick
        tick = time.perf_counter()
        writer.close()
        busy += time.perf_counter() - tick
    except BaseException:
        writer.abort()
        raise
    return frames / busy


# --- inputs ---------------------------------------------------------------------------------------------------
