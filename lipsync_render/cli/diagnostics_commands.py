"""The diagnostics commands: `lipsync bench` and `lipsync doctor`."""

from __future__ import annotations

from pathlib import Path

import typer

from lipsync_render.cli.exits import fail, user_errors
from lipsync_render.cli.option_params import with_options
from lipsync_render.options import BENCH, split_options


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
    inputs = (audio, *package_input_files(model)) if save else ()
    bench_report.check_save_paths(save or [], inputs)
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
        bench_report.save(report, path, inputs)


def package_input_files(model: str) -> tuple[Path, ...]:
    """The files of the package ``model`` names, which no output may replace (none when it does not resolve: the
    run then fails on the package itself)."""
    from lipsync_render.errors import PackageError
    from lipsync_render.package.locate import resolve_package_path
    from lipsync_render.package.manifest import input_files

    try:
        return input_files(resolve_package_path(model))
    except PackageError:
        return ()


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
