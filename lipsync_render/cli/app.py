"""The `lipsync` command: a thin Typer layer over the Python API.

Every command maps LipsyncError to one sentence on stderr and a non-zero exit code; anything else
is a bug and shows a traceback only with --debug.
"""

from __future__ import annotations

import functools
import json
import signal
import sys
from collections.abc import Callable
from pathlib import Path

import typer

from lipsync_render import __version__
from lipsync_render.cli.help_format import tidy_placeholders
from lipsync_render.cli.option_params import with_options
from lipsync_render.errors import LipsyncError
from lipsync_render.options import BENCH, CLI, SessionOptions, split_options
from lipsync_render.store_choice import FRAMES_STORE_HELP, parse_frames_store

app = typer.Typer(
    help="Render lip-synced talking-head videos offline, fast.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
package_app = typer.Typer(help="Create, inspect and validate model packages.", no_args_is_help=True)
app.add_typer(package_app, name="package")
FRAMES_STORE = typer.Option("npy", "--frames-store", metavar="npy|jpeg[:Q]", help=FRAMES_STORE_HELP)

_state = {"debug": False}


def fail(message: str, code: int = 1) -> None:
    """Print one sentence on stderr and exit."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP: stop as Ctrl-C does (stages cancelled, partial files removed), exit 128 + signal."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def _terminate(signum: int, frame) -> None:
    _state["signal"] = signum
    raise Terminated(signum)


def _interrupted(exc: BaseException | None = None) -> None:
    """One line and the exit code for an interruption: 130 for Ctrl-C, 128 + N for signal N."""
    signum = exc.signum if isinstance(exc, Terminated) else _state.get("signal")
    if signum:
        fail(f"terminated by {signal.Signals(signum).name}.", 128 + signum)
    fail("interrupted.", 130)


def user_errors(command: Callable) -> Callable:
    """Turn LipsyncError, Ctrl-C and termination signals into a one-line message and an exit code."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except LipsyncError as exc:
            if _state.get("signal"):  # a helper process that the same signal ended reports first: say why
                _interrupted()
            if _state["debug"]:
                raise
            fail(str(exc), exc.exit_code)
        except KeyboardInterrupt as exc:
            _interrupted(exc)

    return wrapper


def _version(value: bool) -> None:
    if value:
        typer.echo(f"lipsync-render {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks for errors."),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    _state["debug"] = debug


@package_app.command("inspect")
@user_errors
def package_inspect(name: str = typer.Argument(..., help="Package name or path.")) -> None:
    """Print a package's manifest, frames, rectangles and models."""
    from lipsync_render.package.describe import describe_package

    typer.echo(describe_package(name))


@package_app.command("validate")
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
    typer.echo(f"package '{name}' is valid.")


def package_destination(name: str, out_dir: Path | None) -> Path:
    """Where a new package goes: a path as given, else ``OUT_DIR/NAME`` (default ``./packages/NAME``)."""
    if "/" in name or name.startswith("."):
        return Path(name)
    return (out_dir or Path("packages")) / name


@package_app.command("synth")
@user_errors
def package_synth(
    name: str = typer.Argument(..., help="Package name (created under ./packages) or path."),
    frames: int = typer.Option(100, "--frames", min=1, help="Number of background frames."),
    size: str = typer.Option("1280x720", "--size", help="Frame size WxH."),
    seed: int = typer.Option(0, "--seed", help="Seed for frames and weights."),
    tiny: bool = typer.Option(False, "--tiny", help="Trivially cheap models with the same I/O contract."),
    weights: str = typer.Option("constructed", "--weights", help="constructed (visibly talks) or random."),
    out_dir: Path | None = typer.Option(None, "--out-dir", help="Directory for the package (default ./packages)."),
    frames_store: str = FRAMES_STORE,
) -> None:
    """Make a synthetic package: a procedural avatar and true-architecture models."""
    from lipsync_render.synth.avatar import synth_package

    store = parse_frames_store(frames_store)
    try:
        width, height = (int(v) for v in size.lower().split("x"))
    except ValueError:
        fail(f"size must look like 1280x720 (got '{size}').", 2)
    if weights not in ("constructed", "random"):
        fail(f"weights must be 'constructed' or 'random' (got '{weights}').", 2)
    path = synth_package(
        package_destination(name, out_dir),
        name=Path(name).name,
        frames=frames,
        size=(width, height),
        seed=seed,
        tiny=tiny,
        weights=weights,
        frames_store=store,
    )
    typer.echo(f"wrote {path}")


@app.command("features")
@user_errors
def features_command(
    audio: Path = typer.Argument(..., help="Audio file."),
    model: str = typer.Option(..., "--model", "-m", help="Package name or path (for its audio encoder)."),
    output: Path = typer.Option(..., "-o", "--output", help="Output .npy: the (N_enc+2, 512) feature table."),
    mel: Path | None = typer.Option(None, "--mel", help="Also write the (T, 80) mel spectrogram here."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda[:N] or tensorrt."),
    backend: str = typer.Option("auto", "--backend", help="Inference runtime (as for render)."),
) -> None:
    """Compute the per-frame audio feature table of an audio file."""
    from lipsync_render.contract import AUDIO_ENCODER
    from lipsync_render.media.audio import load_audio
    from lipsync_render.media.features import encode, encoder_windows, frame_features
    from lipsync_render.media.mel import melspectrogram
    from lipsync_render.package import load_package
    from lipsync_render.runtimes import get_backend

    options = SessionOptions(backend=backend, device=device)
    package = load_package(model, verify_checksums=False)
    audio_encoder = get_backend(options.backend, options.device).load(package, AUDIO_ENCODER, options)
    spectrogram = melspectrogram(load_audio(audio))
    table = frame_features(encode(audio_encoder, encoder_windows(spectrogram)))
    inputs = (audio, *package.files)
    _save_npy(output, table, inputs)
    if mel is not None:
        _save_npy(mel, spectrogram, inputs)
    typer.echo(f"wrote {output}: {table.shape[0]} x {table.shape[1]} features ({len(spectrogram)} mel frames)")


def _save_npy(path: Path, array, inputs: tuple[Path, ...]) -> None:
    import numpy as np

    from lipsync_render.paths import write_file_atomically

    def write(temporary: Path) -> None:
        with open(temporary, "wb") as file:  # a file object: np.save would append .npy to a name
            np.save(file, array)

    write_file_atomically(path, write, inputs)


@app.command("render")
@user_errors
@with_options(CLI)
def render_command(
    audio: list[Path] = typer.Argument(..., help="Audio files (WAV, FLAC, ... any rate, channels, bit depth)."),
    model: str = typer.Option(..., "--model", "-m", help="Package name or path."),
    output: Path | None = typer.Option(None, "-o", "--output", help="Output MP4 (one audio file only)."),
    out_dir: Path | None = typer.Option(None, "--out-dir", help="Directory for AUDIO_STEM.mp4 outputs (default: .)."),
    fail_fast: bool = typer.Option(False, "--fail-fast", help="Stop at the first file that fails."),
    json_lines: bool = typer.Option(False, "--json", help="Print one JSON object per file on stdout."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar or summary."),
    options: dict | None = None,  # the --options flags, filled in by with_options
) -> None:
    """Render each audio file to an MP4 of the package's person speaking it."""
    from dataclasses import replace

    from lipsync_render.cli.progress import ProgressReporter
    from lipsync_render.rendering.renderer import Renderer

    if output is not None and len(audio) > 1:
        fail("-o/--output takes one audio file; use --out-dir for several.", 2)
    session, per_render = split_options(options)
    targets = planned_outputs(audio, output, out_dir)
    reporter = ProgressReporter(enabled=not quiet)
    failures = 0
    with Renderer(model, session) as renderer:
        if renderer.precision_choice is not None and not quiet:
            typer.echo(f"precision auto: {renderer.precision_choice.describe()}", err=True)
        for path, target in zip(audio, targets):
            frames_dir = per_render.frames_dir
            this_render = (
                replace(per_render, frames_dir=frames_dir / path.stem) if frames_dir and len(audio) > 1 else per_render
            )
            job = functools.partial(renderer.render, path, target, this_render)
            result = reporter.run(path, lambda progress, job=job: job(on_progress=progress))
            failures += result.status != "ok"
            if json_lines:
                typer.echo(json.dumps(result.to_dict()))
            if result.status != "ok" and fail_fast:
                break
    reporter.summary()
    if failures:
        raise typer.Exit(1)


def planned_outputs(audio: list[Path], output: Path | None, out_dir: Path | None) -> list[Path]:
    """Each input's MP4, checked before anything renders: no two inputs to one file, no output onto an input;
    ``--out-dir`` is created."""
    from lipsync_render.paths import first_collision, first_overwritten_input

    targets = [output or (out_dir or Path(".")) / f"{path.stem}.mp4" for path in audio]
    collision = first_collision([(str(path), target) for path, target in zip(audio, targets)])
    if collision:
        first, second, target = collision
        fail(f"{first} and {second} would both be written to {target}; render them to different --out-dir folders.", 2)
    overwritten = first_overwritten_input(targets, audio)
    if overwritten:
        fail(f"The output {overwritten[0]} is the input {overwritten[1]}; refusing to overwrite an input.", 2)
    if out_dir is not None:
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            fail(f"Cannot create the output directory {out_dir} ({exc.strerror or exc}).", 2)
    return targets


@package_app.command("build")
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
    import os

    store = parse_frames_store(frames_store)
    from lipsync_render.package.build import build_package, describe_build

    if out_dir is not None:
        dest = out_dir / name
    elif os.sep in name or name.startswith("."):
        dest = Path(name)
    else:
        dest = Path.cwd() / "packages" / name
    built = build_package(
        dest, Path(name).name, dataset, unet=unet, encoder=encoder, video=video, smooth=smooth, frames_store=store
    )
    typer.echo(describe_build(built))


@package_app.command("export-onnx")
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


@app.command("bench")
@user_errors
@with_options(BENCH)
def bench_command(
    model: str = typer.Option(..., "--model", "-m", help="Package name or path."),
    batch_sizes: str = typer.Option("1,4,8,25", "--batch-sizes", "-b", help="Comma-separated UNet batch sizes."),
    frames: int | None = typer.Option(
        None, "--frames", min=1, help="Render N frames of generated speech (default 100)."
    ),
    audio: Path | None = typer.Option(None, "--audio", help="Render this audio file instead."),
    warmup: int = typer.Option(1, "--warmup", min=0, help="Untimed renders after the cold one."),
    repeat: int = typer.Option(3, "--repeat", min=1, help="Timed renders per batch size (median reported)."),
    ceilings: bool = typer.Option(
        True, "--ceilings/--no-ceilings", help="Also measure UNet-only, without-UNet and bare x264."
    ),
    json_output: bool = typer.Option(False, "--json", help="Print the full report as one JSON object on stdout."),
    save: list[Path] | None = typer.Option(
        None,
        "--save",
        help="Also write the report to this file, by suffix: .json, .csv (a line per batch size), .md (tables and "
        "host, ready to paste) or .png (a plot; needs the 'plot' extra). Repeatable.",
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress lines on stderr."),
    options: dict | None = None,  # the --options flags, filled in by with_options
) -> None:
    """Benchmark the render pipeline per batch size: stage times, cold/warm FPS, ceilings, host."""
    from lipsync_render.diagnostics import bench, bench_report

    if frames is not None and audio is not None:
        fail("give --frames or --audio, not both.", 2)
    try:
        sizes = [int(v) for v in batch_sizes.split(",") if v.strip()]
    except ValueError:
        fail(f"batch sizes must look like 1,4,8,25 (got '{batch_sizes}').", 2)
    session, per_render = split_options(options)
    bench_report.check_save_paths(save or [])
    progress = None if quiet else (lambda message: typer.echo(f"bench: {message}", err=True))
    report = bench.run_bench(
        model,
        sizes,
        frames=frames,
        audio=audio,
        warmup=warmup,
        repeat=repeat,
        session=session,
        render=per_render,
        ceilings=ceilings,
        on_progress=progress,
    )
    if json_output:
        typer.echo(bench_report.to_json(report), nl=False)
    else:
        bench_report.print_report(report)
    for path in save or []:
        bench_report.save(report, path)


@app.command("render-many")
@user_errors
def render_many_command(
    manifest: Path = typer.Argument(
        ..., help="JOBS.csv or JOBS.jsonl: audio, model, output and option columns per job."
    ),
    out_dir: Path | None = typer.Option(
        None, "--out-dir", help="Outputs DIR/AUDIO_STEM.mp4 for jobs without an output."
    ),
    skip_existing: bool = typer.Option(
        False, "--skip-existing", help="Skip jobs whose MP4 and matching .json sidecar exist."
    ),
    fail_fast: bool = typer.Option(False, "--fail-fast", help="Start no job after the first failure."),
    ray_address: str | None = typer.Option(None, "--ray", help="Fan out over Ray: a cluster address, auto or local."),
    json_lines: bool = typer.Option(False, "--json", help="Print one JSON object per job on stdout as it finishes."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar, per-job lines or summary."),
) -> None:
    """Render every job of a manifest; with --skip-existing a rerun resumes where the last one stopped."""
    from lipsync_render.cli.progress import JobReporter
    from lipsync_render.jobs import read_jobs, run_jobs

    jobs = read_jobs(manifest, out_dir)
    with JobReporter(len(jobs), enabled=not quiet) as reporter:

        def on_result(result) -> None:
            if json_lines:
                typer.echo(json.dumps(result.to_dict()))
            reporter.add(result)

        results = run_jobs(
            jobs,
            skip_existing=skip_existing,
            fail_fast=fail_fast,
            on_result=on_result,
            ray_address=ray_address,
            on_frames=reporter.frames,
        )
    reporter.summary()
    if any(r.status == "error" for r in results) or len(results) < len(jobs):
        raise typer.Exit(1)


@app.command("doctor")
@user_errors
def doctor_command(
    model: list[str] | None = typer.Option(None, "--model", "-m", help="Check these packages (default: all found)."),
) -> None:
    """Check what is really usable here (ONNX Runtime providers, GPU libraries, encoders, disk, packages)."""
    from lipsync_render.diagnostics.doctor import report, run_checks

    checks = run_checks(models=model or None)
    typer.echo(report(checks))
    if any(check.status == "fail" for check in checks):
        raise typer.Exit(1)


def main() -> None:
    """Console-script entry point: usage errors are one sentence too (exit 2), signals end it cleanly."""
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _terminate)
    try:
        code = tidy_placeholders(typer.main.get_command(app))(standalone_mode=False, prog_name="lipsync")
    except typer.TyperException as exc:  # a flag typer itself cannot parse, a missing argument
        message = " ".join(exc.format_message().split())
        typer.echo(f"error: {message[0].lower() + message[1:] if message else 'bad arguments.'}", err=True)
        sys.exit(exc.exit_code)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except KeyboardInterrupt as exc:
        try:
            _interrupted(exc)
        except typer.Exit as stop:
            sys.exit(stop.exit_code)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
