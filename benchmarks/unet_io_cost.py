"""CPU cost of the UNet's input/output work: the host float path against the uint8 wrapper graph (ONNX Runtime).

    python benchmarks/unet_io_cost.py [--model tiny]

Batches of 25 of the package's 328 crops through the tiny stand-in UNet on one thread: the float path does
``visual_input`` and ``prediction_to_uint8`` in numpy around the float UNet; the uint8 path runs the wrapper
graph (``--unet-io uint8``), which does the same work inside ONNX Runtime. Both must give the same bytes; prints
CPU and wall ms per frame for three rounds.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from lipsync_render.contract import UNET, UNET_UINT8
from lipsync_render.model_input import crop_328, prediction_to_uint8, visual_input
from lipsync_render.options import SessionOptions
from lipsync_render.package import load_package
from lipsync_render.runtimes import get_backend

BATCH, RUNS = 25, 8


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny")
    package = load_package(parser.parse_args().model)
    options = SessionOptions(device="cpu", precision="fp32", batch_size=BATCH, threads=1)
    backend = get_backend("onnxruntime")
    float_unet, uint8_unet = backend.load(package, UNET, options), backend.load(package, UNET_UINT8, options)
    indices = [i % package.frame_count for i in range(BATCH)]
    crops = np.stack([crop_328(np.asarray(package.frames[i]), package.rects[i]) for i in indices])
    audio = np.random.default_rng(0).uniform(0, 2, (BATCH, 32, 16, 16)).astype(np.float32)

    def float_path() -> np.ndarray:
        visual = np.empty((BATCH, *UNET.inputs[0]), np.float32)
        for row, crop in enumerate(crops):
            visual_input(crop, out=visual[row])
        return prediction_to_uint8(float_unet.run(visual, audio))

    def uint8_path() -> np.ndarray:
        return uint8_unet.run(crops, audio)

    assert np.array_equal(float_path(), uint8_path()), "the two paths differ"
    for round_number in range(3):
        for name, path in (("float path (numpy + float UNet)", float_path), ("uint8 wrapper graph", uint8_path)):
            cpu, wall = time.thread_time(), time.perf_counter()
            for _ in range(RUNS):
                path()
            frames = RUNS * BATCH
            print(
                f"round {round_number}: {name}: CPU {1000 * (time.thread_time() - cpu) / frames:.2f} ms/frame, "
                f"wall {1000 * (time.perf_counter() - wall) / frames:.2f} ms/frame"
            )


if __name__ == "__main__":
    main()
