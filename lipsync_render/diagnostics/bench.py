"""Benchmarks of the real render pipeline: per-stage timings, cold and warm throughput, stage ceilings.

``run_bench`` renders the same audio at each batch size with :class:`Renderer` to a temporary MP4 (the path
``lipsync render`` takes) and measures, in the same run, what each part could do on its own:

- model only: the UNet in an ONNX Runtime loop on random inputs of the batch shape (the render's own
  session, so the same device and threads);
- without the UNet: the same pipeline with a trivially cheap UNet (same frames, audio encoder and options);
- encoder: bare libx264 on the package's frames at the same preset and CRF, no audio.

Stage times are the busy seconds each pipeline thread reports. The stages overlap, so they add up to more than
the wall time; the slowest one sets the pace. Per-batch figures are per-frame figures times the batch size.
"""

from __future__ import annotations

import math
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from lipsync_render import __version__
from lipsync_render.contract import VIDEO_FPS
from lipsync_render.diagnostics.ceilings import encode_only_fps, tiny_unet_twin, unet_only_fps
from lipsync_render.errors import LipsyncError
from lipsync_render.host import HostInfo, PeakRSS, host_info, max_rss_mb
from lipsync_render.media.audio import SAMPLE_RATE, load_audio
from lipsync_render.media.features import frame_count_for_audio
from lipsync_render.options import RenderOptions, SessionOptions
from lipsync_render.package import Package
from lipsync_render.planning.session_plan import device_settings
from lipsync_render.planning.settings import effective_threads
from lipsync_render.rendering.renderer import Renderer
from lipsync_render.rendering.result import STAGES, RenderResult
from lipsync_render.runtimes.calibration import babble

SAMPLES_PER_FRAME = SAMPLE_RATE // VIDEO_FPS  # 640: N frames of audio make exactly N video frames
MB = 1024 * 1024
CEILING_NAMES = {"model_only_fps": "UNet", "without_unet_fps": "rest of pipeline", "encode_fps": "video encoder"}


@dataclass
class BenchSettings:
    """What was benchmarked and how."""

    model: str
    frames: int
    audio: str  # the file rendered, or how it was generated
    audio_seconds: float
    batch_sizes: list[int]
    warmup: int
    repeat: int
    session: SessionOptions  # as resolved for the device (workers, threads); batch_size varies per row
    render: RenderOptions


@dataclass
class BenchRow:
    """Results at one batch size. FPS are frames per wall second; ``end_to_end`` covers the whole render."""

    batch_size: int
    frames: int
    stage_ms_per_batch: dict[str, float]  # busy ms of each stage per batch of batch_size frames (median run)
    stage_ms_per_frame: dict[str, float]
    total_ms_per_batch: float  # wall ms per batch of batch_size frames (median run)
    ms_per_frame: float
    end_to_end_fps: float  # median of the warm runs
    end_to_end_fps_min: float
    end_to_end_fps_max: float
    warm_seconds: list[float]  # wall seconds of each warm run
    cold_seconds: float  # Renderer creation (package check, sessions, workers) to finished file of the first run
    cold_fps: float
    load_seconds: float  # Renderer creation alone
    realtime_factor: float  # audio seconds per wall second (above 1: faster than real time)
    peak_rss_mb: float  # resident memory of this process plus its compositing workers, sampled
    model_only_fps: float | None = None
    without_unet_fps: float | None = None
    efficiency: float | None = None  # end_to_end_fps / the lowest ceiling
    bound_by: str | None = None  # the stage with the lowest ceiling
    providers: list[str] = field(default_factory=list)  # what the UNet session actually runs on
    video_encoder: str = ""  # the FFmpeg encoder the render actually used
    runtime: str = ""  # backend and UNet precision the render used (what --precision auto chose)


@dataclass
class Ceilings:
    """How the stage ceilings were measured; the per-batch-size ones are in the rows."""

    encode_fps: float | None  # bare H.264 encoding (the render's encoder) of the package's frames, no audio
    encode_frames: int
    encoder: str
    preset: str
    crf: int
    width: int
    height: int
    model_only: str = (
        "the UNet alone (UNetRunner) on random inputs of the batch shape, as many batches as a render, "
        "measured after each timed render; median"
    )
    without_unet: str = (
        "the same pipeline and options with the tiny stand-in UNet (elementwise), median of the warm runs"
    )


@dataclass
class BenchReport:
    """Everything one ``lipsync bench`` run measured."""

    settings: BenchSettings
    rows: list[BenchRow]
    ceilings: Ceilings
    host: HostInfo
    max_rss_mb: float  # peak resident memory of the benchmarking process itself (ru_maxrss)

    def to_dict(self) -> dict:
        return asdict(self)


def run_bench(
    model: str | os.PathLike,
    batch_sizes: Sequence[int] = (1, 4, 8, 25),
    frames: int | None = None,
    audio: str | os.PathLike | None = None,
    warmup: int = 1,
    repeat: int = 3,
    session: SessionOptions = SessionOptions(),
    render: RenderOptions = RenderOptions(),
    ceilings: bool = True,
    on_progress: Callable[[str], None] | None = None,
) -> BenchReport:
    """Benchmark ``model`` at each batch size on ``audio`` (or ``frames`` frames of generated speech).

    With neither ``frames`` nor ``audio``, 100 frames (4 s) are rendered.
    """
    batch_sizes = check_batch_sizes(batch_sizes)
    if warmup < 0 or repeat < 1:
        raise LipsyncError(f"Warm-up must be 0 or more and repeat 1 or more (got {warmup} and {repeat}).")
    if frames is not None and audio is not None:
        raise LipsyncError("Give either a frame count or an audio file, not both.")
    say = on_progress or (lambda message: None)
    # one worker count and thread count for every row (the plan's rules), so rows differ by batch size alone
    resolved = device_settings(session)
    session = replace(session, workers=resolved.workers, threads=effective_threads(session.threads))
    with tempfile.TemporaryDirectory(prefix="lipsync-bench-") as tmp:
        workdir = Path(tmp)
        if audio is None:
            frames = 100 if frames is None else frames
            audio_path, audio_label = write_speech_wav(workdir / "speech.wav", frames), speech_label(frames)
        else:
            audio_path, audio_label = Path(audio), str(audio)
        samples = load_audio(audio_path)
        frame_total = frame_count_for_audio(len(samples))
        settings = BenchSettings(
            str(model),
            frame_total,
            audio_label,
            len(samples) / SAMPLE_RATE,
            batch_sizes,
            warmup,
            repeat,
            session,
            render,
        )
        rows, package = [], None
        for batch_size in batch_sizes:
            say(f"batch {batch_size}: cold run, {warmup} warm-up, {repeat} timed")
            row, package = bench_batch_size(model, audio_path, settings, batch_size, workdir, ceilings)
            if ceilings:
                say(f"batch {batch_size}: ceilings (UNet only, pipeline without the UNet)")
                row.without_unet_fps = without_unet_fps(package, audio_path, settings, batch_size, workdir)
            rows.append(row)
        codec, encode_fps = rows[0].video_encoder, None
        if ceilings:
            say(f"bare {codec} ceiling, {frame_total} frames")
            encode_fps = encode_only_fps(package, frame_total, codec, render, workdir / "encode.mp4")
        for row in rows:
            set_efficiency(row, encode_fps)
    return BenchReport(
        settings=settings,
        rows=rows,
        ceilings=Ceilings(encode_fps, frame_total, codec, render.preset, render.crf, package.width, package.height),
        host=host_info(rows[0].providers, codec, render.preset, render.crf, __version__),
        max_rss_mb=max_rss_mb(),
    )


def check_batch_sizes(batch_sizes: Sequence[int]) -> list[int]:
    """Batch sizes in the given order without repeats; each at least 1."""
    sizes = list(dict.fromkeys(int(b) for b in batch_sizes))
    if not sizes or min(sizes) < 1:
        raise LipsyncError(f"Batch sizes must be one or more integers of at least 1 (got {list(batch_sizes)}).")
    return sizes


def bench_batch_size(
    model, audio_path: Path, settings: BenchSettings, batch_size: int, workdir: Path, ceilings: bool
) -> tuple[BenchRow, Package]:
    """Cold run, warm-up and timed runs at one batch size (plus the UNet-only ceiling, on the same session)."""
    output = workdir / f"bench_b{batch_size}.mp4"
    with PeakRSS() as memory:
        start = time.perf_counter()
        renderer = Renderer(model, replace(settings.session, batch_size=batch_size))
        try:
            load_seconds = renderer.load_seconds
            renderer.render(audio_path, output, settings.render)  # features=package without aud_ave.npy fails here
            cold_seconds = time.perf_counter() - start
            for _ in range(settings.warmup):
                renderer.render(audio_path, output, settings.render)
            # The UNet-only ceiling is measured after each timed render, not once, so both medians see the
            # same stretch of a shared machine's background load.
            runs, model_runs = [], []
            for _ in range(settings.repeat):
                runs.append(timed_render(renderer, audio_path, output, settings.render))
                if ceilings:
                    model_runs.append(unet_only_fps(renderer.unet, batch_size, math.ceil(settings.frames / batch_size)))
            model_fps = statistics.median(model_runs) if model_runs else None
            providers, codec = renderer.providers, renderer.plan.video_encoder
            runtime = f"{renderer.plan.backend} {renderer.plan.precision}"
        finally:
            renderer.close()
    row = make_row(
        batch_size,
        settings.frames,
        settings.audio_seconds,
        runs,
        cold_seconds,
        load_seconds,
        memory.peak_bytes / MB,
        providers,
    )
    row.model_only_fps, row.video_encoder, row.runtime = model_fps, codec, runtime
    return row, renderer.package


def timed_render(
    renderer: Renderer, audio_path: Path, output: Path, options: RenderOptions
) -> tuple[float, RenderResult]:
    """Wall seconds of one whole render call (audio loading included) and its result."""
    start = time.perf_counter()
    result = renderer.render(audio_path, output, options)
    return time.perf_counter() - start, result


def make_row(
    batch_size: int,
    frames: int,
    audio_seconds: float,
    runs: list[tuple[float, RenderResult]],
    cold_seconds: float,
    load_seconds: float,
    peak_rss_mb: float,
    providers: list[str],
) -> BenchRow:
    """Per-batch and per-frame figures from the timed runs (medians; min and max of the wall time)."""
    walls = [wall for wall, _ in runs]
    wall = statistics.median(walls)
    per_frame = {
        stage: 1000 * statistics.median(r.seconds.get(stage, 0.0) for _, r in runs) / frames for stage in STAGES
    }
    return BenchRow(
        batch_size=batch_size,
        frames=frames,
        stage_ms_per_batch={stage: ms * batch_size for stage, ms in per_frame.items()},
        stage_ms_per_frame=per_frame,
        total_ms_per_batch=1000 * wall / frames * batch_size,
        ms_per_frame=1000 * wall / frames,
        end_to_end_fps=frames / wall,
        end_to_end_fps_min=frames / max(walls),
        end_to_end_fps_max=frames / min(walls),
        warm_seconds=walls,
        cold_seconds=cold_seconds,
        cold_fps=frames / cold_seconds,
        load_seconds=load_seconds,
        realtime_factor=audio_seconds / wall,
        peak_rss_mb=peak_rss_mb,
        providers=list(providers),
    )


def set_efficiency(row: BenchRow, encode_fps: float | None) -> None:
    """End-to-end FPS over the lowest ceiling, and which stage that ceiling belongs to."""
    ceilings = {
        "model_only_fps": row.model_only_fps,
        "without_unet_fps": row.without_unet_fps,
        "encode_fps": encode_fps,
    }
    known = {name: fps for name, fps in ceilings.items() if fps}
    if not known:
        return
    lowest = min(known, key=known.get)
    row.bound_by = CEILING_NAMES[lowest]
    row.efficiency = row.end_to_end_fps / known[lowest]


def without_unet_fps(
    package: Package, audio_path: Path, settings: BenchSettings, batch_size: int, workdir: Path
) -> float:
    """End-to-end FPS of the same render with a stand-in UNet that costs next to nothing (always fp32)."""
    twin = tiny_unet_twin(package, workdir)
    output = workdir / f"without_unet_b{batch_size}.mp4"
    options = replace(settings.session, batch_size=batch_size, precision="fp32", cuda_graph=False)
    with Renderer(twin, options) as renderer:
        for _ in range(settings.warmup):
            renderer.render(audio_path, output, settings.render)
        walls = [timed_render(renderer, audio_path, output, settings.render)[0] for _ in range(settings.repeat)]
    return settings.frames / statistics.median(walls)


def write_speech_wav(path: Path, frames: int) -> Path:
    """A 16 kHz mono WAV of exactly ``frames`` / 25 s of speech-like babble; its content costs any stage the same."""
    import soundfile as sf

    if frames < 1:
        raise LipsyncError(f"Frame count must be at least 1 (got {frames}).")
    sf.write(path, babble(frames / VIDEO_FPS)[: frames * SAMPLES_PER_FRAME], SAMPLE_RATE, subtype="PCM_16")
    return path


def speech_label(frames: int) -> str:
    return f"generated speech-like babble, {frames} frames ({frames / VIDEO_FPS:g} s)"
