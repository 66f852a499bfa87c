"""CLI flags derived from the option definitions in ``lipsync_render.options``: one typer parameter per option."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any

import typer

from lipsync_render.options import Option, options_for


def _help(o: Option) -> str:
    spec = o.spec
    if spec.minimum is not None:
        bounds = f"{spec.minimum}-{spec.maximum}" if spec.maximum is not None else f">= {spec.minimum}"
        return f"{spec.help} [{bounds}]"
    return spec.help


def _metavar(o: Option) -> str | None:
    if o.spec.choices:
        return "|".join(o.spec.choices)
    return o.spec.metavar


def _completer(choices: tuple[str, ...]) -> Callable[[str], list[str]]:
    """Shell completion of a choice option's values."""
    return lambda incomplete: [choice for choice in choices if choice.startswith(incomplete)]


def _parameter(o: Option) -> inspect.Parameter:
    """Values are checked by the options dataclasses (one sentence, exit 2), so typer gets plain types."""
    kind = o.kind if o.default is not None or o.kind is bool else o.kind | None
    if o.kind is bool:
        default = typer.Option(o.default, *o.flags, help=_help(o))
    else:
        default = typer.Option(
            o.default,
            *o.flags,
            help=_help(o),
            metavar=_metavar(o),
            show_default=o.default is not None,
            autocompletion=_completer(o.spec.choices) if o.spec.choices else None,
        )
    return inspect.Parameter(o.name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=kind)


def with_options(surface: str, exclude: tuple[str, ...] = ()) -> Callable:
    """Add the options settable on ``surface`` as flags; the command gets them as ``options``, a name->value dict."""
    chosen = [o for o in options_for(surface) if o.name not in exclude]

    def decorate(command: Callable) -> Callable:
        signature = inspect.signature(command)
        own = [p for p in signature.parameters.values() if p.name != "options"]

        @functools.wraps(command)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            options = {o.name: kwargs.pop(o.name) for o in chosen}
            return command(*args, options=options, **kwargs)

        wrapper.__signature__ = signature.replace(parameters=[*own, *map(_parameter, chosen)])
        return wrapper

    return decorate
