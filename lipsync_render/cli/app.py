"""The `lipsync` command: the Typer app, its global options and entry point, and which command is which.

The commands live by group (``render_commands``, ``package_commands``, ``diagnostics_commands``), each a thin
layer over the Python API; ``exits`` maps LipsyncError to one sentence on stderr and a non-zero exit code, and
anything else is a bug that shows a traceback only with --debug.
"""

from __future__ import annotations

import atexit
import os
import sys
import threading
import warnings
from typing import NoReturn

import typer

from lipsync_render import __version__
from lipsync_render.cli import diagnostics_commands, package_commands, render_commands, review_commands
from lipsync_render.cli.exits import handle_termination_signals, interrupted, state
from lipsync_render.cli.help_format import tidy_placeholders
from lipsync_render.rendering.child_process import exit_without_teardown

app = typer.Typer(
    help="Render lip-synced talking-head videos offline, fast.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
package_app = typer.Typer(help="Create, inspect and validate model packages.", no_args_is_help=True)
app.add_typer(package_app, name="package")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"lipsync-render {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks for errors."),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    state["debug"] = debug
    if not debug and not sys.warnoptions:  # stderr holds our sentences; -W or --debug shows library warnings
        warnings.simplefilter("ignore")


package_app.command("inspect")(package_commands.package_inspect)
package_app.command("validate")(package_commands.package_validate)
package_app.command("synth")(package_commands.package_synth)
app.command("features")(render_commands.features_command)
app.command("render")(render_commands.render_command)
package_app.command("build")(package_commands.package_build)
package_app.command("export-onnx")(package_commands.package_export_onnx)
app.command("bench")(diagnostics_commands.bench_command)
app.command("render-many")(render_commands.render_many_command)
app.command("doctor")(diagnostics_commands.doctor_command)
app.command("review")(review_commands.review_command)


def quiet_resource_tracker() -> None:
    """multiprocessing's resource tracker is a helper process writing to our stderr: killed mid-render (issue 24),
    it is started again and prints a KeyError traceback for every lock it never saw registered. Its stderr is
    pointed at /dev/null while it starts (its own output is never one of our sentences); --debug keeps it."""
    from multiprocessing import resource_tracker

    tracker = resource_tracker._resource_tracker
    start = tracker.ensure_running

    def ensure_running_quietly():
        saved = os.dup(2)
        try:
            with open(os.devnull, "wb") as null:
                os.dup2(null.fileno(), 2)
                start()
        finally:
            os.dup2(saved, 2)
            os.close(saved)

    tracker.ensure_running = ensure_running_quietly


def main() -> NoReturn:
    """Console-script entry point: usage errors are one sentence too (exit 2), signals end it cleanly. It ends the
    process (see :func:`exit_process`); to run commands inside another program, call ``app`` instead."""
    handle_termination_signals()
    if not sys.warnoptions and "--debug" not in sys.argv:
        # inherited by helpers Python starts with this interpreter's flags (multiprocessing's resource tracker,
        # whose 'leaked shared_memory' warnings would otherwise reach the user's terminal)
        sys.warnoptions.append("ignore")
        warnings.simplefilter("ignore")
        quiet_resource_tracker()
    try:
        code = tidy_placeholders(typer.main.get_command(app))(standalone_mode=False, prog_name="lipsync")
    except typer.TyperException as exc:  # a flag typer itself cannot parse, a missing argument
        message = " ".join(exc.format_message().split())
        typer.echo(f"error: {message[0].lower() + message[1:] if message else 'bad arguments.'}", err=True)
        code = exc.exit_code
    except typer.Exit as exc:
        code = exc.exit_code
    except KeyboardInterrupt as exc:
        try:
            interrupted(exc)
        except typer.Exit as stop:
            code = stop.exit_code
    exit_process(code if isinstance(code, int) else 0)


def exit_process(code: int) -> NoReturn:
    """Exit with ``code`` once the atexit handlers have run and stdout and stderr are flushed, skipping the
    interpreter's teardown.

    That teardown (collecting every module, then OpenVINO's and ONNX Runtime's static destructors) took 0.09 s of
    each `lipsync render` call's fixed cost, and a finished command needs none of it: its files are closed and its
    helper processes joined, and the atexit handlers (multiprocessing's, logging's) still run here. While a
    non-daemon thread is alive it exits the ordinary way, which waits for that thread.
    """
    here = threading.current_thread()
    if any(thread.is_alive() and not thread.daemon and thread is not here for thread in threading.enumerate()):
        sys.exit(code)
    atexit._run_exitfuncs()
    exit_without_teardown(code)


if __name__ == "__main__":
    main()
