"""The CLI's signal and exit policy: a LipsyncError is one sentence on stderr and its exit code, Ctrl-C exits 130,
SIGTERM and SIGHUP stop as Ctrl-C does and exit 128 + the signal; anything else is a bug and shows a traceback
(and so does a LipsyncError with --debug)."""

from __future__ import annotations

import functools
import signal
from collections.abc import Callable
from typing import NoReturn

import typer

from lipsync_render.errors import LipsyncError

state = {"debug": False}  # "signal": the termination signal received, once one is


def fail(message: str, code: int = 1) -> NoReturn:
    """Print one sentence on stderr and exit."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP: stop as Ctrl-C does (stages cancelled, partial files removed), exit 128 + signal."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def _terminate(signum: int, frame) -> None:
    state["signal"] = signum
    raise Terminated(signum)


def handle_termination_signals() -> None:
    """Make SIGTERM and SIGHUP raise :class:`Terminated` in the main thread."""
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _terminate)


def interrupted(exc: BaseException | None = None) -> NoReturn:
    """One line and the exit code for an interruption: 130 for Ctrl-C, 128 + N for signal N."""
    signum = exc.signum if isinstance(exc, Terminated) else state.get("signal")
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
            if state.get("signal"):  # a helper process that the same signal ended reports first: say why
                interrupted()
            if state["debug"]:
                raise
            fail(str(exc), exc.exit_code)
        except KeyboardInterrupt as exc:
            interrupted(exc)

    return wrapper
