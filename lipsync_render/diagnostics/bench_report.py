"""Benchmark reports: the terminal tables, JSON, CSV, Markdown and the PNG plot of a :class:`BenchReport`."""

from __future__ import annotations

import csv
import io
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np

from lipsync_render.diagnostics.bench import BenchReport, BenchRow
from lipsync_render.errors import LipsyncError, OptionError, RenderError
from lipsync_render.host import HostInfo
from lipsync_render.paths import output_problem, write_file_atomically
from lipsync_render.rendering.result import STAGES


def to_json(report: BenchReport) -> str:
    return json.dumps(report.to_dict(), indent=2) + "\n"


def flat_row(row: BenchRow, encode_fps: float | None) -> dict:
    """One CSV line: the row's fields with the stage dictionaries spread into columns."""
    flat = {"batch_size": row.batch_size, "frames": row.frames}
    for stage in STAGES:
        flat[f"{stage}_ms_per_batch"] = row.stage_ms_per_batch[stage]
        flat[f"{stage}_ms_per_frame"] = row.stage_ms_per_frame[stage]
    for name, value in asdict(row).items():
        if name not in flat and name not in ("stage_ms_per_batch", "stage_ms_per_frame"):
            flat[name] = " ".join(f"{v:.4f}" for v in value) if name == "warm_seconds" else value
    flat["providers"] = "+".join(row.providers)
    flat["encode_fps"] = encode_fps
    return {name: round(value, 4) if isinstance(value, float) else value for name, value in flat.items()}


def to_csv(report: BenchReport) -> str:
    lines = [flat_row(row, report.ceilings.encode_fps) for row in report.rows]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(lines[0]) if lines else ["batch_size"], lineterminator="\n")
    writer.writeheader()
    writer.writerows(lines)
    return buffer.getvalue()


def _num(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _ms(row: BenchRow, stage: str) -> str:
    return f"{row.stage_ms_per_batch[stage]:.1f} / {row.stage_ms_per_frame[stage]:.2f}"


BUSY_EFFICIENCY = 1.05  # measured noise between identical runs here is about ±15%, so only a clear excess warns
STAGE_HEADERS = ("batch", *STAGES, "total ms/batch", "ms/frame")
THROUGHPUT_HEADERS = (
    "batch",
    "runtime",
    "end-to-end FPS (min-max)",
    "cold s (FPS)",
    "load s",
    "RTF",
    "model-only FPS",
    "without-UNet FPS",
    "efficiency",
    "bound by",
    "peak RSS MB",
)


def stage_cells(row: BenchRow) -> list[str]:
    return [
        str(row.batch_size),
        *(_ms(row, stage) for stage in STAGES),
        f"{row.total_ms_per_batch:.1f}",
        f"{row.ms_per_frame:.2f}",
    ]


def throughput_cells(row: BenchRow) -> list[str]:
    efficiency = "-" if row.efficiency is None else f"{100 * row.efficiency:.0f}%"
    return [
        str(row.batch_size),
        row.runtime,
        f"{row.end_to_end_fps:.1f} ({row.end_to_end_fps_min:.1f}-{row.end_to_end_fps_max:.1f})",
        f"{row.cold_seconds:.2f} ({row.cold_fps:.1f})",
        f"{row.load_seconds:.2f}",
        f"{row.realtime_factor:.2f}x",
        _num(row.model_only_fps),
        _num(row.without_unet_fps),
        efficiency,
        row.bound_by or "-",
        f"{row.peak_rss_mb:.0f}",
    ]


def describe_settings(report: BenchReport) -> str:
    s = report.settings
    session = s.session
    return (
        f"model {s.model}, {s.frames} frames ({s.audio_seconds:.2f} s audio: {s.audio}), features from "
        f"{s.render.features}, backend {session.backend}, device {session.device}, {session.precision}"
        f"{' + CUDA graph' if session.cuda_graph else ''}, {session.threads} inference threads, "
        f"compositing workers: {session.workers}, "
        f"{s.warmup} warm-up + median of {s.repeat} runs"
    )


def describe_host(host: HostInfo) -> str:
    cores = f"{host.usable_cores} usable of {host.logical_cores} logical" + (
        f" / {host.physical_cores} physical" if host.physical_cores else ""
    )
    return (
        f"{host.cpu} ({cores} cores, {host.memory_gb:g} GB), GPU {host.gpu or 'none'}, "
        f"ONNX Runtime {host.onnxruntime} on {', '.join(host.providers) or '?'}, PyAV {host.pyav} / FFmpeg "
        f"{host.ffmpeg}, {host.encoder} preset {host.preset} crf {host.crf}, Python {host.python}, {host.date}"
    )


def describe_encode_ceiling(report: BenchReport) -> str:
    c = report.ceilings
    if c.encode_fps is None:
        return "ceilings not measured (--no-ceilings)"
    return (
        f"bare {c.encoder} ceiling: {c.encode_fps:.1f} FPS ({c.encode_frames} frames {c.width}x{c.height}, "
        f"preset {c.preset}, crf {c.crf}, no audio)"
    )


def print_report(report: BenchReport, console=None) -> None:
    """Two rich tables (stage times, throughput) and the settings, ceiling and host lines."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console(highlight=False, width=None if sys.stdout.isatty() else 160)
    stages = Table(title="Stage busy time, ms per batch / per frame (stages overlap)", title_justify="left")
    for header in STAGE_HEADERS:
        stages.add_column(header, justify="right")
    throughput = Table(title="Throughput (warm median) and ceilings", title_justify="left")
    for header in THROUGHPUT_HEADERS:
        throughput.add_column(header, justify="right")
    for row in report.rows:
        stages.add_row(*stage_cells(row))
        throughput.add_row(*throughput_cells(row))
    console.print(describe_settings(report), soft_wrap=True, markup=False)
    console.print(stages)
    console.print(throughput)
    console.print(describe_encode_ceiling(report), soft_wrap=True, markup=False)
    console.print(f"host: {describe_host(report.host)}", soft_wrap=True, markup=False)
    for warning in busy_host_warnings(report):
        console.print(f"warning: {warning}", soft_wrap=True, markup=False, style="yellow")


def busy_host_warnings(report: BenchReport) -> list[str]:
    """An efficiency above 100% cannot happen on a quiet host: a ceiling was measured while it was busier."""
    return [
        f"efficiency {100 * row.efficiency:.0f}% at batch {row.batch_size}: the host was busier while a ceiling "
        "was measured than during the renders, so these rows are not comparable; rerun on a quiet machine."
        for row in report.rows
        if row.efficiency is not None and row.efficiency > BUSY_EFFICIENCY
    ]


def markdown_table(headers: Sequence[str], rows: list[list[str]], first: str = "right") -> list[str]:
    """A Markdown table with right-aligned number columns (the first one left-aligned on request)."""
    rules = [":---" if i == 0 and first == "left" else "---:" for i in range(len(headers))]
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join(rules) + "|"]
    return lines + ["| " + " | ".join(cells) + " |" for cells in rows]


def to_markdown(report: BenchReport) -> str:
    """The report as Markdown, ready to paste into a results page."""
    host = report.host
    lines = [
        f"Settings: {describe_settings(report)}.",
        "",
        "Stage busy time, ms per batch / per frame (the stages overlap, so they add up to more than the total):",
        "",
    ]
    lines += markdown_table(STAGE_HEADERS, [stage_cells(row) for row in report.rows])
    lines += [
        "",
        "Throughput: end-to-end FPS is the median of the warm runs (min-max), cold includes the model load; "
        "load = Renderer creation alone; RTF = audio seconds per wall second; "
        "efficiency = end-to-end FPS / the lowest ceiling:",
        "",
    ]
    lines += markdown_table(THROUGHPUT_HEADERS, [throughput_cells(row) for row in report.rows])
    lines += [
        "",
        f"Ceilings: {describe_encode_ceiling(report)}; model-only = {report.ceilings.model_only}; "
        f"without-UNet = {report.ceilings.without_unet}.",
        "",
        "Host:",
        "",
        f"- CPU: {host.cpu}, {host.usable_cores} usable / {host.logical_cores} logical / "
        f"{host.physical_cores or '?'} physical cores, {host.memory_gb:g} GB RAM",
        f"- GPU: {host.gpu or 'none'}",
        f"- ONNX Runtime {host.onnxruntime}, sessions on {', '.join(host.providers) or '?'} "
        f"(available: {', '.join(host.available_providers)})",
        f"- PyAV {host.pyav}, FFmpeg {host.ffmpeg} ({', '.join(f'{k} {v}' for k, v in host.ffmpeg_libraries.items())})",
        f"- Encoder: {host.encoder}, preset {host.preset}, crf {host.crf}",
        f"- lipsync-render {host.lipsync_render}, Python {host.python}, {host.platform}",
        f"- Date: {host.date}",
    ]
    return "\n".join(lines) + "\n"


def require_matplotlib() -> None:
    """Fail with one sentence when the optional plotting dependency is missing."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise LipsyncError(
            "Writing a plot needs matplotlib: install it with pip install 'lipsync-render[plot]'."
        ) from None


def save_plot(report: BenchReport, path: str | os.PathLike) -> None:
    """PNG: FPS against batch size with the ceilings (left) and per-frame stage busy time (right)."""
    require_matplotlib()
    from matplotlib.figure import Figure

    sizes = [row.batch_size for row in report.rows]
    x = np.arange(len(sizes))
    figure = Figure(figsize=(12, 4.8), layout="constrained")
    fps_axes, stage_axes = figure.subplots(1, 2)
    e2e = np.array([row.end_to_end_fps for row in report.rows])
    spread = np.array(
        [
            [row.end_to_end_fps - row.end_to_end_fps_min for row in report.rows],
            [row.end_to_end_fps_max - row.end_to_end_fps for row in report.rows],
        ]
    )
    fps_axes.errorbar(x, e2e, yerr=spread, marker="o", capsize=4, label="end-to-end (warm, min-max)")
    fps_axes.plot(x, [row.cold_fps for row in report.rows], marker=".", linestyle=":", label="end-to-end, cold")
    for name, label in (("model_only_fps", "model only (UNet)"), ("without_unet_fps", "pipeline without the UNet")):
        values = [getattr(row, name) for row in report.rows]
        if all(v is not None for v in values):
            fps_axes.plot(x, values, marker="s", linestyle="--", label=label)
    if report.ceilings.encode_fps is not None:
        fps_axes.axhline(
            report.ceilings.encode_fps, color="grey", linestyle="-.", label=f"bare {report.ceilings.encoder}"
        )
    fps_axes.set(
        xticks=x,
        xticklabels=[str(s) for s in sizes],
        xlabel="batch size",
        ylabel="frames per second",
        title="Throughput and stage ceilings",
    )
    plotted = [v for line in fps_axes.get_lines() for v in line.get_ydata() if v and v > 0]
    if plotted and max(plotted) / min(plotted) > 20:
        fps_axes.set_yscale("log")
    else:
        fps_axes.set_ylim(bottom=0)
    fps_axes.legend(fontsize="small")
    bottom = np.zeros(len(sizes))
    for stage in STAGES:
        values = np.array([row.stage_ms_per_frame[stage] for row in report.rows])
        stage_axes.bar(x, values, bottom=bottom, label=stage)
        bottom += values
    stage_axes.plot(x, [row.ms_per_frame for row in report.rows], color="black", marker="o", label="wall ms/frame")
    stage_axes.set(
        xticks=x,
        xticklabels=[str(s) for s in sizes],
        xlabel="batch size",
        ylabel="ms per frame",
        title="Stage busy time per frame (overlapping)",
    )
    stage_axes.legend(fontsize="small")
    figure.suptitle(
        f"lipsync bench: {report.settings.model}, {report.settings.frames} frames, "
        f"{report.host.cpu}, {report.host.gpu or 'no GPU'}",
        fontsize="medium",
    )
    figure.savefig(path, dpi=110, format="png")


SAVE_FORMATS = {".json": "JSON", ".csv": "CSV", ".md": "Markdown", ".png": "PNG plot"}


def check_save_paths(paths: Sequence[str | os.PathLike], inputs: Sequence[str | os.PathLike] = ()) -> None:
    """Fail before benchmarking when a --save file has an unknown suffix, could not be written, is an input of the
    run (the audio, a file of the package) or is given twice (the one rule, ``paths.output_problem``)."""
    for path in map(Path, paths):
        if path.suffix.lower() not in SAVE_FORMATS:
            kinds = ", ".join(f"{suffix} ({kind})" for suffix, kind in SAVE_FORMATS.items())
            raise OptionError(f"--save {path}: the suffix must be one of {kinds}.")
    problem = output_problem(paths, inputs)
    if problem:
        raise RenderError(problem)
    if any(Path(path).suffix.lower() == ".png" for path in paths):
        require_matplotlib()


def save(report: BenchReport, path: str | os.PathLike, inputs: Sequence[str | os.PathLike] = ()) -> None:
    """Write the report in the format its suffix names, atomically, describing a failure in one sentence."""
    path = Path(path)
    inputs = tuple(Path(p) for p in inputs if p is not None)
    suffix = path.suffix.lower()
    if suffix == ".png":
        write_file_atomically(path, lambda temporary: save_plot(report, temporary), inputs)
        return
    text = {".json": to_json, ".csv": to_csv, ".md": to_markdown}[suffix](report)
    write_file_atomically(path, lambda temporary: temporary.write_text(text), inputs)
