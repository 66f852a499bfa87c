"""The naive reference-style render against lipsync-render, on the same audio and package, in one run.

    python benchmarks/compare.py --model demo --frames 100 --batch-size 25

Both sides get the same audio, package, device, ONNX Runtime threads and H.264 encoder settings, the same cold
run, ``--warmup`` untimed runs and ``--repeat`` timed runs (median, min and max of the wall time):

- naive: ``naive_baseline.NaiveRenderer``, one frame at a time with stages in sequence (see that file);
- lipsync-render: ``lipsync_render.diagnostics.bench.run_bench`` at one batch size, i.e. ``Renderer.render`` to an MP4.

Then both outputs are decoded and compared (PSNR) to show they render the same video. Prints a side-by-side
table, the speed-up, and a Markdown block ready to paste into benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lipsync_render.diagnostics import bench, bench_report
from lipsync_render.media.video import read_frames_bgr
from lipsync_render.options import RenderOptions, SessionOptions
from lipsync_render.planning.session_plan import device_settings
from lipsync_render.rendering.renderer import Renderer

sys.path.insert(0, str(Path(__file__).resolve().parent))
from naive_baseline import STAGES as NAIVE_STAGES
from naive_baseline import NaiveRenderer, NaiveResult


@dataclass
class NaiveRuns:
    """The baseline's cold run and timed runs."""

    load_seconds: float
    cold_seconds: float
    runs: list[NaiveResult]
    providers: list[str]

    @property
    def walls(self) -> list[float]:
        return [run.wall_seconds for run in self.runs]

    @property
    def frames(self) -> int:
        return self.runs[0].frames

    @property
    def fps(self) -> float:
        return self.frames / statistics.median(self.walls)

    def stage_ms_per_frame(self, stage: str) -> float:
        return statistics.median(run.ms_per_frame(stage) for run in self.runs)


def run_naive(model: str, audio: Path, output: Path, args) -> NaiveRuns:
    """Cold run (sessions included), warm-up, then timed runs of the baseline."""
    start = time.perf_counter()
    renderer = NaiveRenderer(model, args.device, args.threads, args.crf, args.preset, args.codec)
    renderer.render(audio, output)
    cold = time.perf_counter() - start
    for _ in range(args.warmup):
        renderer.render(audio, output)
    runs = [renderer.render(audio, output) for _ in range(args.repeat)]
    return NaiveRuns(renderer.load_seconds, cold, runs, renderer.providers)


def render_once(model: str, audio: Path, output: Path, args) -> None:
    """One lipsync-render render kept for the output check (run_bench deletes its own)."""
    with Renderer(model, session_options(args)) as renderer:
        renderer.render(audio, output, render_options(args))


def session_options(args) -> SessionOptions:
    return SessionOptions(
        batch_size=args.batch_size,
        workers=args.workers,
        device=args.device,
        threads=args.threads,
        video_encoder=args.encoder,
        precision=args.precision,
    )


def render_options(args) -> RenderOptions:
    return RenderOptions(preset=args.preset, crf=args.crf)


def psnr(first: Path, second: Path) -> tuple[float, int, int]:
    """PSNR in dB over all frames of two videos (BGR), and both frame counts."""
    squared, pixels, count_a, count_b = 0.0, 0, 0, 0
    frames_b = read_frames_bgr(second)
    for a in read_frames_bgr(first):
        count_a += 1
        b = next(frames_b, None)
        if b is None:
            continue
        count_b += 1
        diff = a.astype(np.int32) - b.astype(np.int32)
        squared += float(np.square(diff).sum())
        pixels += diff.size
    count_b += sum(1 for _ in frames_b)
    mse = squared / max(pixels, 1)
    return (float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)), count_a, count_b


def summary_rows(
    naive: NaiveRuns, row: bench.BenchRow, batch_size: int, workers: int, precision: str = "fp32"
) -> list[list[str]]:
    def cells(name, batch, fps, low, high, cold, frames, audio_seconds):
        return [
            name,
            str(batch),
            f"{fps:.2f} ({low:.2f}-{high:.2f})",
            f"{1000 / fps:.1f}",
            f"{cold:.2f}",
            f"{audio_seconds * fps / frames:.2f}x",
        ]

    audio_seconds = naive.runs[0].audio_seconds
    return [
        cells(
            "naive, reference-style (sequential, batch 1, MJPG intermediate + one encode pass)",
            1,
            naive.fps,
            naive.frames / max(naive.walls),
            naive.frames / min(naive.walls),
            naive.cold_seconds,
            naive.frames,
            audio_seconds,
        ),
        cells(
            f"lipsync-render (overlapped stages, compositing workers: {workers}, {precision})",
            batch_size,
            row.end_to_end_fps,
            row.end_to_end_fps_min,
            row.end_to_end_fps_max,
            row.cold_seconds,
            row.frames,
            audio_seconds,
        ),
    ]


HEADERS = ("renderer", "batch", "FPS, warm median (min-max)", "ms/frame", "cold s", "real-time factor")


def markdown_block(report: bench.BenchReport, naive: NaiveRuns, check: tuple[float, int, int] | None, args) -> str:
    row, settings = report.rows[0], report.settings
    speedup, cold_speedup = row.end_to_end_fps / naive.fps, naive.cold_seconds / row.cold_seconds
    lines = [
        f"### Naive baseline vs lipsync-render: {settings.model}, {settings.frames} frames "
        f"({settings.audio_seconds:.2f} s audio), {report.host.date[:10]}",
        "",
    ]
    rows = summary_rows(naive, row, args.batch_size, args.workers, args.precision)
    lines += bench_report.markdown_table(HEADERS, rows, first="left")
    lines += [
        "",
        f"**Speed-up: {speedup:.2f}x** end-to-end (warm medians); cold (load included): {cold_speedup:.2f}x.",
        "",
        "Naive, ms per frame by stage (sequential, they add up to the total): "
        + ", ".join(f"{stage} {naive.stage_ms_per_frame(stage):.2f}" for stage in NAIVE_STAGES)
        + ".",
        "lipsync-render, busy ms per frame by stage (overlapping): "
        + ", ".join(f"{stage} {ms:.2f}" for stage, ms in row.stage_ms_per_frame.items())
        + ".",
    ]
    if row.model_only_fps is not None:
        lines.append(
            f"Ceilings at batch {args.batch_size}: UNet only {row.model_only_fps:.2f} FPS, "
            f"without the UNet {row.without_unet_fps:.2f} FPS, {bench_report.describe_encode_ceiling(report)}; "
            f"efficiency {100 * row.efficiency:.0f}% (bound by {row.bound_by})."
        )
    if check is not None:
        value, frames_a, frames_b = check
        lines.append(
            f"Same output: PSNR {value:.1f} dB between the two MP4s over {frames_a} / {frames_b} frames "
            "(the naive side goes through a JPEG-compressed intermediate)."
        )
    lines += [
        "",
        f"Settings: {bench_report.describe_settings(report)}.",
        f"Host: {bench_report.describe_host(report.host)}.",
    ]
    return "\n".join(lines) + "\n"


def print_side_by_side(report: bench.BenchReport, naive: NaiveRuns, args) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(highlight=False, width=None if sys.stdout.isatty() else 160)
    table = Table(
        title="Naive baseline vs lipsync-render (same audio, package, device, threads, encoder)", title_justify="left"
    )
    for header in HEADERS:
        table.add_column(header, justify="left" if header == "renderer" else "right")
    for cells in summary_rows(naive, report.rows[0], args.batch_size, args.workers, args.precision):
        table.add_row(*cells)
    console.print(table)
    row = report.rows[0]
    console.print(
        f"naive FPS {naive.fps:.2f}, lipsync-render FPS {row.end_to_end_fps:.2f}, "
        f"ratio {row.end_to_end_fps / naive.fps:.2f}x",
        markup=False,
    )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", "-m", required=True, help="Package name or path.")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--frames", type=int, help="Render N frames of generated speech (default 100).")
    source.add_argument("--audio", type=Path, help="Render this audio file instead.")
    parser.add_argument(
        "--batch-size",
        "-b",
        type=int,
        default=None,
        help="lipsync-render UNet batch size (default: as lipsync render chooses for the device).",
    )
    parser.add_argument(
        "--workers",
        "-w",
        type=int,
        default=None,
        help="lipsync-render compositing processes (default: as lipsync render chooses).",
    )
    parser.add_argument(
        "--precision",
        default="fp32",
        help="lipsync-render UNet precision (fp32, int8, fp16); the baseline stays fp32 like the reference.",
    )
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda[:N] or tensorrt (both sides).")
    parser.add_argument("--threads", type=int, default=0, help="ONNX Runtime threads, both sides (0: all cores).")
    parser.add_argument(
        "--encoder",
        default="auto",
        help="lipsync-render video encoder (auto, software, nvenc); the baseline uses the same.",
    )
    parser.add_argument("--preset", default="veryfast", help="x264 preset (both sides).")
    parser.add_argument("--crf", type=int, default=18, help="H.264 quality (both sides).")
    parser.add_argument("--warmup", type=int, default=1, help="Untimed runs after the cold one (both sides).")
    parser.add_argument("--repeat", type=int, default=3, help="Timed runs (both sides; median reported).")
    parser.add_argument("--ceilings", action="store_true", help="Also measure the lipsync-render stage ceilings.")
    parser.add_argument("--no-check", dest="check", action="store_false", help="Skip the output PSNR check.")
    parser.add_argument("--save", type=Path, help="Also write both results as JSON to this file.")
    args = parser.parse_args(argv)
    automatic = device_settings(SessionOptions(device=args.device, precision=args.precision))
    args.batch_size = args.batch_size or automatic.batch_size
    args.workers = automatic.workers if args.workers is None else args.workers
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="lipsync-compare-") as tmp:
        workdir = Path(tmp)
        audio = args.audio or bench.write_speech_wav(workdir / "speech.wav", args.frames or 100)
        say = lambda message: print(f"compare: {message}", file=sys.stderr, flush=True)  # noqa: E731
        report = bench.run_bench(
            args.model,
            [args.batch_size],
            audio=audio,
            warmup=args.warmup,
            repeat=args.repeat,
            session=session_options(args),
            render=render_options(args),
            ceilings=args.ceilings,
            on_progress=lambda m: say(f"lipsync-render {m}"),
        )
        if args.audio is None:
            report.settings.audio = bench.speech_label(args.frames or 100)
        args.codec = report.rows[0].video_encoder
        say(f"naive baseline: cold run, {args.warmup} warm-up, {args.repeat} timed")
        naive = run_naive(args.model, audio, workdir / "naive.mp4", args)
        check = None
        if args.check:
            say("output check: one more lipsync-render render, PSNR against the naive output")
            render_once(args.model, audio, workdir / "lipsync.mp4", args)
            check = psnr(workdir / "lipsync.mp4", workdir / "naive.mp4")
    print_side_by_side(report, naive, args)
    block = markdown_block(report, naive, check, args)
    print("\nMarkdown for benchmarks/RESULTS.md:\n")
    print(block)
    if args.save:
        data = {
            "lipsync_render": report.to_dict(),
            "naive": {
                "load_seconds": naive.load_seconds,
                "cold_seconds": naive.cold_seconds,
                "providers": naive.providers,
                "fps": naive.fps,
                "runs": [r.to_dict() for r in naive.runs],
            },
            "speedup": report.rows[0].end_to_end_fps / naive.fps,
            "psnr_db": None if check is None else check[0],
        }
        args.save.write_text(json.dumps(data, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
