"""The rendering commands: `lipsync render`, `lipsync features` and `lipsync render-many`."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import typer

from lipsync_render.cli.exits import fail, user_errors
from lipsync_render.cli.option_params import with_options
from lipsync_render.options import CLI, SessionOptions, split_options


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
    from lipsync_render.errors import RenderError
    from lipsync_render.media.audio import load_audio
    from lipsync_render.media.features import encode, encoder_windows, frame_features
    from lipsync_render.media.mel import melspectrogram
    from lipsync_render.package import load_package
    from lipsync_render.paths import output_problem
    from lipsync_render.planning.session_plan import plan_session
    from lipsync_render.runtimes import get_backend

    package = load_package(model, verify_checksums=False)
    inputs = (audio, *package.files)
    problem = output_problem([output, mel], inputs)  # before any work, and before the first file is written
    if problem:
        raise RenderError(problem)
    # the reference's fp32 features: the plan resolves the backend and device, --precision auto plays no part
    plan = plan_session(package, SessionOptions(backend=backend, device=device, precision="fp32"), measure=False)
    audio_encoder = get_backend(plan.backend).load(package, AUDIO_ENCODER, plan.load_options)
    spectrogram = melspectrogram(load_audio(audio))
    table = frame_features(encode(audio_encoder, encoder_windows(spectrogram)))
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

    from lipsync_render.cli.progress import RenderReporter
    from lipsync_render.errors import LipsyncError
    from lipsync_render.jobs.outputs import planned_outputs
    from lipsync_render.rendering.renderer import Renderer

    if output is not None and len(audio) > 1:
        fail("-o/--output takes one audio file; use --out-dir for several.", 2)
    session, per_render = split_options(options)
    targets = planned_outputs(audio, output, out_dir)
    reporter = RenderReporter(enabled=not quiet)
    failures = 0
    with Renderer(model, session) as renderer:
        if renderer.plan.precision_choice is not None and not quiet:
            typer.echo(f"precision auto: {renderer.plan.precision_choice.describe()}", err=True)
        for path, target in zip(audio, targets):
            frames_dir = per_render.frames_dir
            this_render = (
                replace(per_render, frames_dir=frames_dir / path.stem) if frames_dir and len(audio) > 1 else per_render
            )
            try:
                with reporter.frames(path) as on_progress:
                    result = renderer.render(path, target, this_render, on_progress)
                reporter.finished(result)
            except LipsyncError as exc:
                result = reporter.failed(path, exc)
            failures += result.status != "ok"
            if json_lines:
                typer.echo(json.dumps(result.to_dict()))
            if result.status != "ok" and fail_fast:
                break
    reporter.summary()
    if failures:
        raise typer.Exit(1)


MAX_RETRIES = 10
MAX_JOB_TIMEOUT = 7 * 24 * 3600


@user_errors
def render_many_command(
    manifest: Path = typer.Argument(
        ..., help="JOBS.csv or JOBS.jsonl: audio, model, output and option columns per job."
    ),
    out_dir: str | None = typer.Option(
        None, "--out-dir", help="Outputs DIR/AUDIO_STEM.mp4 for jobs without an output (a folder or a URL)."
    ),
    skip_existing: bool = typer.Option(
        False, "--skip-existing", help="Skip jobs whose MP4 and matching .json sidecar exist."
    ),
    fail_fast: bool = typer.Option(False, "--fail-fast", help="Start no job after the first failure."),
    ray_address: str | None = typer.Option(None, "--ray", help="Fan out over Ray: a cluster address, auto or local."),
    retries: int = typer.Option(
        3, "--retries", help="Ray: times a job whose worker or node died is run again elsewhere (0-10)."
    ),
    job_timeout: float = typer.Option(
        3600, "--job-timeout", help="Ray: seconds a job may take from submission, waiting included (1-604800)."
    ),
    json_lines: bool = typer.Option(False, "--json", help="Print one JSON object per job on stdout as it finishes."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar, per-job lines or summary."),
    review: Path | None = typer.Option(None, "--review", help="Also write a review page of the outputs (HTML)."),
) -> None:
    """Render every job of a manifest; with --skip-existing a rerun resumes where the last one stopped."""
    from lipsync_render.cli.progress import JobReporter
    from lipsync_render.jobs import read_jobs, run_jobs
    from lipsync_render.jobs.ray_runner import ClusterSettings

    if not 0 <= retries <= MAX_RETRIES:
        fail(f"--retries must be at least 0 and at most {MAX_RETRIES} (got {retries}).", 2)
    if not (math.isfinite(job_timeout) and 1 <= job_timeout <= MAX_JOB_TIMEOUT):
        fail(f"--job-timeout must be at least 1 and at most {MAX_JOB_TIMEOUT} seconds (got {job_timeout:g}).", 2)
    jobs = read_jobs(manifest, out_dir)
    results_out = sys.stdout  # ours alone: Ray's messages are kept off it while it runs
    cluster = None if ray_address is None else ClusterSettings(ray_address, retries, job_timeout, quiet)
    with JobReporter(len(jobs), enabled=not quiet) as reporter:

        def on_result(result) -> None:
            if json_lines:
                typer.echo(json.dumps(result.to_dict()), file=results_out)
            reporter.add(result)

        results = run_jobs(
            jobs,
            skip_existing=skip_existing,
            fail_fast=fail_fast,
            on_result=on_result,
            ray_address=cluster,
            on_frames=reporter.frames,
        )
    reporter.summary()
    if review is not None:
        from lipsync_render.review import review_outputs
        from lipsync_render.storage import is_url

        local = [Path(job.output) for job in jobs if not is_url(job.output)]  # the page reads local files
        review_outputs([path for path in local if path.is_file()], review)
    if any(r.status == "error" for r in results) or len(results) < len(jobs):
        raise typer.Exit(1)
