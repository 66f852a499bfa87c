"""What the BT.709 conversion costs against OpenCV's BT.601 one, and how far each decodes from the source.

    python benchmarks/colour_cost.py [--model demo] [--repeat 200]

Times one core converting package frames (1280x720 for the demo) to I420, then decodes each result the way a
player does (the stream's tags honoured: BT.709 for ours; an untagged BT.601 stream shown as HD players show it,
with BT.709) and reports the mean and 99th-percentile error against the source pixels.
"""

from __future__ import annotations

import argparse
import statistics
import time

import av
import cv2
import numpy as np

from lipsync_render.media.colour import BT709Converter, decode_bgr
from lipsync_render.package import load_package


def milliseconds(function, repeat: int) -> float:
    function()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def played(i420: np.ndarray, colorspace: int) -> np.ndarray:
    frame = av.VideoFrame.from_ndarray(i420, format="yuv420p")
    frame.colorspace, frame.color_range = colorspace, 1
    return decode_bgr(frame)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="demo")
    parser.add_argument("--repeat", type=int, default=200)
    args = parser.parse_args()
    cv2.setNumThreads(1)
    package = load_package(args.model)
    frame = np.ascontiguousarray(package.frames[0])
    height, width = frame.shape[:2]
    converter = BT709Converter(width, height)
    out = np.empty((height * 3 // 2, width), np.uint8)
    ours = milliseconds(lambda: converter.convert(frame, out=out), args.repeat)
    opencv = milliseconds(lambda: cv2.cvtColor(frame, cv2.COLOR_BGR2YUV_I420, dst=out), args.repeat)
    print(f"{width}x{height}, one core, median of {args.repeat}:")
    print(f"  BT.709 (lipsync-render)   {ours:.2f} ms a frame")
    print(f"  BT.601 (cv2.cvtColor)     {opencv:.2f} ms a frame")
    for name, i420 in (
        ("BT.709, tagged BT.709", converter.convert(frame)),
        ("BT.601, shown as BT.709", cv2.cvtColor(frame, cv2.COLOR_BGR2YUV_I420)),
    ):
        error = np.abs(played(i420, colorspace=1).astype(int) - frame)
        print(f"  {name:<25} mean |error| {error.mean():.2f}, 99th percentile {np.percentile(error, 99):.0f} levels")


if __name__ == "__main__":
    main()
