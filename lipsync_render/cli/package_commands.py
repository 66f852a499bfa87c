"""The `lipsync package` commands: inspect, validate, synth, build and export-onnx."""

from __future__ import annotations

import re
from pathlib import Path

import typer

from lipsync_render.cli.exits import fail, user_errors
from lipsync_render.option_values import SIZE_PATTERN, frame_size, size_problem
from lipsync_render.store_choice import FRAMES_STORE_HELP, parse_frames_store

FRAMES_STORE = typer.Option("npy", "--frames-store", metavar="npy|jpeg[:Q]", help=FRAMES_STORE_HELP)


@user_errors
def package_inspect(name: str = typer.Argument(..., help="Package name or path.")) -> None:
    """Print a package's manifest, frames, rectangles and models."""
    from lipsync_render.package.describe import describe_package

    typer.echo(describe_package(name))


@user_errors
def package_validate(
    name: str = typer.Argument(..., help="Package name or path."),
    skip_checksums: bool = typer.Option(False, "--skip-checksums", help="Do not hash the files."),
) -> None:
    """Check a package as render would; exit 4 with the list of problems."""
    from lipsync_render.package import check_package

    report = check_package(name, verify_checksums=not skip_checksums, decode_frames=True)
    for warning in report.warnings:
        typer.echo(f"warning: {warning}", err=True)
    for problem in report.problems:
        typer.echo(f"problem: {problem}", err=True)
    if report.problems:
        fail(f"package '{name}' has {len(report.problems)} problem(s).", 4)
    from lipsync_render.package.describe import faceless_line

    if faceless := faceless_line(report.package):
        typer.echo(f"note: {faceless}.")
    typer.echo(f"package '{name}' is valid.")


@user_errors
def package_synth(
    name: str = typer.Argument(..., help="Package name (created under ./packages) or path."),
    frames: int = typer.Option(100, "--frames", min=1, help="Number of background frames."),
    size: str = typer.Option("1280x720", "--size", help="Frame size WxH."),
    seed: int = typer.Option(0, "--seed", help="Seed for frames and weights."),
    tiny: bool = typer.Option(False, "--tiny", help="Trivially cheap models with the same I/O contract."),
    weights: str = typer.Option(
        "constructed", "--weights", help="constructed (visibly talks), cast (the same with a colour cast) or random."
    ),
    out_dir: Path | None = typer.Option(None, "--out-dir", help="Directory for the package (default ./packages)."),
    frames_store: str = FRAMES_STORE,
) -> None:
    """Make a synthetic package: a procedural avatar and true-architecture models."""
    from lipsync_render.package.locate import package_destination
    from lipsync_render.synth.avatar import synth_package

    store = parse_frames_store(frames_store)
    if not re.fullmatch(SIZE_PATTERN, size, re.IGNORECASE):
        fail(f"size must look like 1280x720 (got '{size}').", 2)
    problem = size_problem(size)
    if problem:
        fail(f"size {size} {problem}.", 2)
    if weights not in ("constructed", "cast", "random"):
        fail(f"weights must be 'constructed', 'cast' or 'random' (got '{weights}').", 2)
    path = synth_package(
        package_destination(name, out_dir),
        name=Path(name).name,
        frames=frames,
        size=frame_size(size),
        seed=seed,
        tiny=tiny,
        weights=weights,
        frames_store=store,
    )
    typer.echo(f"wrote {path}")


@user_errors
def package_build(
    name: str = typer.Argument(..., help="Package name (written to packages/NAME) or a path."),
    dataset: Path = typer.Option(
        ..., "--from", help="SyncTalk_2D dataset directory (or a pre-processed 'sanders' one)."
    ),
    unet: Path | None = typer.Option(
        None, "--unet", help="UNet ONNX model (default: DATASET/checkpoint/model_best.onnx)."
    ),
    encoder: Path | None = typer.Option(
        None, "--encoder", help="Audio encoder ONNX model (default: DATASET/audio_encoder.onnx)."
    ),
    video: Path | None = typer.Option(
        None, "--video", help="Take the frames from this video instead of the dataset's."
    ),
    smooth: int = typer.Option(
        0, "--smooth", min=0, help="Average crop rectangles over N frames against jitter (0: off)."
    ),
    out_dir: Path | None = typer.Option(
        None, "--out-dir", help="Write the package to DIR/NAME instead of packages/NAME."
    ),
    frames_store: str = FRAMES_STORE,
) -> None:
    """Build a model package from SyncTalk_2D training data."""
    store = parse_frames_store(frames_store)
    from lipsync_render.package.build import build_package
    from lipsync_render.package.describe import describe_build
    from lipsync_render.package.locate import PACKAGES_DIR, package_destination

    # unlike synth, --out-dir wins even over a path, and the default folder is spelled out from the cwd
    dest = out_dir / name if out_dir is not None else package_destination(name, Path.cwd() / PACKAGES_DIR)
    built = build_package(
        dest, Path(name).name, dataset, unet=unet, encoder=encoder, video=video, smooth=smooth, frames_store=store
    )
    typer.echo(describe_build(built))


@user_errors
def package_export_onnx(
    unet: Path | None = typer.Option(None, "--unet", help="UNet-328 'ave' PyTorch checkpoint (.pth)."),
    encoder: Path | None = typer.Option(None, "--encoder", help="AVE audio encoder PyTorch checkpoint (.pth)."),
    out: Path = typer.Option(..., "-o", "--out", help="Directory for unet.onnx and audio_encoder.onnx."),
    skip_check: bool = typer.Option(False, "--skip-check", help="Skip the ONNX Runtime vs PyTorch parity check."),
    parity_tolerance: float | None = typer.Option(
        None,
        "--parity-tolerance",
        min=0,
        help="Accept an ONNX Runtime output this far from a float64 run of the model (default: 4 times PyTorch "
        "fp32's own distance from it, at least 1e-4).",
    ),
) -> None:
    """Export SyncTalk_2D checkpoints to ONNX (needs the 'export' extra: PyTorch)."""
    from lipsync_render.package.export import export_onnx

    exported = export_onnx(out, unet=unet, encoder=encoder, check=not skip_check, tolerance=parity_tolerance)
    for role, (path, parity) in exported.items():
        typer.echo(f"{role}: {path} ({parity.describe()})")
