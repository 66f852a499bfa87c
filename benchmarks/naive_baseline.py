"""The plain way to render, as the reference ``inference_328.py`` does: one frame at a time, stages in sequence.

    python benchmarks/naive_baseline.py examples/hello.wav --model demo -o out/naive.mp4

1. Features for the whole audio first: mel spectrogram, the package's AVE encoder, end rows duplicated.
2. Then per output frame, strictly in sequence: take the background frame (ping-pong order), crop and resize to
   328, build the model input, run the UNet at batch 1 (plain ``session.run``), paste the prediction back, and
   append the frame to an intermediate MJPG AVI (``cv2.VideoWriter``, like the reference's ``temp.mp4``).
3. One H.264 + AAC encode pass over the intermediate file with PyAV (the reference calls ffmpeg for this).

Geometry, features and frame order come from the project's own functions, so the output shows the same thing as
``lipsync render``; only the MJPG intermediate adds a little JPEG loss. The sessions are made with the project's
``make_session`` on the same device and thread count, so a comparison measures the pipeline, not the settings.
The reference reads each frame with ``cv2.imread`` from a JPEG; packages hold frames as a memory-mapped array,
so this baseline copies the frame from it instead (cheaper than a JPEG decode: the baseline is if anything flattered).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path

import av
import cv2
import numpy as np

from lipsync_render.contract import AUDIO_ENCODER
from lipsync_render.media.audio import SAMPLE_RATE, load_audio
from lipsync_render.media.features import audio_features, frame_block, frame_count_for_audio
from lipsync_render.media.video import VideoTarget, VideoWriter
from lipsync_render.model_input import crop_328, prediction_to_uint8, visual_input
from lipsync_render.package import Package, load_package
from lipsync_render.rendering.frame_order import frame_schedule
from lipsync_render.rendering.geometry import paste_back
from lipsync_render.runtimes.ort.runner import OrtModel
from lipsync_render.runtimes.ort.sessions import default_threads, make_session

STAGES = ("features", "frame", "model_input", "unet", "paste", "intermediate", "encode")


@dataclass
class NaiveResult:
    """One baseline render: frames, wall seconds, and the seconds spent in each sequential stage."""

    output: str
    frames: int
    audio_seconds: float
    wall_seconds: float
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def fps(self) -> float:
        return self.frames / self.wall_seconds

    def ms_per_frame(self, stage: str) -> float:
        return 1000 * self.seconds.get(stage, 0.0) / self.frames

    def to_dict(self) -> dict:
        return {**asdict(self), "fps": self.fps}


class NaiveRenderer:
    """Holds the package and both ONNX Runtime sessions; renders one frame at a time."""

    def __init__(
        self,
        model: str | Path | Package,
        device: str = "auto",
        threads: int = 0,
        crf: int = 18,
        preset: str = "veryfast",
        codec: str = "libx264",
    ):
        start = time.perf_counter()
        self.package = model if isinstance(model, Package) else load_package(model)
        self.unet = make_session(self.package.unet_path, device, threads or default_threads())
        self.audio_encoder = OrtModel(make_session(self.package.audio_encoder_path, device, 1), AUDIO_ENCODER, 64)
        self.visual_name, self.audio_name = (i.name for i in self.unet.get_inputs())
        self.crf, self.preset, self.codec = crf, preset, codec
        self.load_seconds = time.perf_counter() - start

    @property
    def providers(self) -> list[str]:
        return self.unet.get_providers()

    def render(self, audio_path: str | Path, output: str | Path) -> NaiveResult:
        """Render ``audio_path`` to ``output`` the plain way; the intermediate AVI goes to a temporary directory."""
        start = time.perf_counter()
        seconds: dict[str, float] = defaultdict(float)
        samples = load_audio(audio_path)
        with _timer(seconds, "features"):
            table = audio_features(samples, self.audio_encoder)
        count = frame_count_for_audio(len(samples))
        with tempfile.TemporaryDirectory(prefix="naive-") as tmp:
            intermediate = Path(tmp) / "temp.avi"
            self._write_intermediate(table, count, intermediate, seconds)
            with _timer(seconds, "encode"):
                self._encode(intermediate, Path(audio_path), Path(output))
        return NaiveResult(str(output), count, len(samples) / SAMPLE_RATE, time.perf_counter() - start, dict(seconds))

    def _write_intermediate(self, table: np.ndarray, count: int, path: Path, seconds: dict) -> None:
        package = self.package
        writer = cv2.VideoWriter(
            str(path), cv2.VideoWriter_fourcc(*"MJPG"), package.fps, (package.width, package.height)
        )
        if not writer.isOpened():
            raise RuntimeError(f"OpenCV cannot write an MJPG AVI to {path}.")
        try:
            for k, index in enumerate(frame_schedule(count, package.frame_count)):
                self._render_frame(table, k, int(index), writer, seconds)
        finally:
            writer.release()

    def _render_frame(self, table: np.ndarray, k: int, index: int, writer, seconds: dict) -> None:
        rect = self.package.rects[index]
        with _timer(seconds, "frame"):
            frame = np.array(self.package.frames[index])
        with _timer(seconds, "model_input"):
            c328 = crop_328(frame, rect)
            visual = visual_input(c328)[None]
            audio = frame_block(table, k)[None]
        with _timer(seconds, "unet"):
            (output,) = self.unet.run(None, {self.visual_name: visual, self.audio_name: audio})
        with _timer(seconds, "paste"):
            finished = paste_back(frame, rect, c328, prediction_to_uint8(output)[0], out=frame)
        with _timer(seconds, "intermediate"):
            writer.write(finished)

    def _encode(self, intermediate: Path, audio_path: Path, output: Path) -> None:
        """Decode the MJPG intermediate and encode H.264 + AAC in one pass."""
        package = self.package
        target = VideoTarget(
            output, package.width, package.height, package.fps, audio_path, self.codec, crf=self.crf, preset=self.preset
        )
        writer = VideoWriter(target)
        try:
            with av.open(str(intermediate)) as container:
                for frame in container.decode(video=0):
                    writer.write_i420(frame.reformat(format="yuv420p").to_ndarray())
            writer.close()
        except BaseException:
            writer.abort()
            raise


class _timer:
    """Adds the seconds spent inside a ``with`` block to ``seconds[stage]``."""

    def __init__(self, seconds: dict, stage: str):
        self.seconds, self.stage = seconds, stage

    def __enter__(self) -> None:
        self.start = time.perf_counter()

    def __exit__(self, *exc) -> None:
        self.seconds[self.stage] += time.perf_counter() - self.start


def describe(result: NaiveResult) -> str:
    stages = ", ".join(f"{stage} {result.ms_per_frame(stage):.2f}" for stage in STAGES)
    return (
        f"{result.frames} frames in {result.wall_seconds:.2f} s: {result.fps:.2f} FPS "
        f"({1000 / result.fps:.1f} ms/frame; per stage, ms/frame: {stages})"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("audio", type=Path, help="Audio file to render.")
    parser.add_argument("--model", "-m", required=True, help="Package name or path.")
    parser.add_argument("--output", "-o", type=Path, required=True, help="Output MP4.")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda[:N] or tensorrt.")
    parser.add_argument("--threads", type=int, default=0, help="ONNX Runtime threads (0: all cores).")
    parser.add_argument("--crf", type=int, default=18, help="H.264 quality.")
    parser.add_argument("--preset", default="veryfast", help="x264 preset.")
    parser.add_argument("--json", action="store_true", help="Print the result as one JSON object.")
    args = parser.parse_args(argv)
    renderer = NaiveRenderer(args.model, args.device, args.threads, args.crf, args.preset)
    result = renderer.render(args.audio, args.output)
    if args.json:
        import json

        print(json.dumps({**result.to_dict(), "load_seconds": renderer.load_seconds, "providers": renderer.providers}))
    else:
        print(
            f"naive baseline: {describe(result)}; sessions loaded in {renderer.load_seconds:.2f} s "
            f"on {', '.join(renderer.providers)}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
