"""Conventional help: flags show no value placeholder, values show an upper-case one, arguments their name.

This Typer prints ``<bool>`` beside every flag and the Python type beside every value and argument; one walk
over the finished command tree sets the placeholders the way Unix tools write them.
"""

from __future__ import annotations

from typing import Any

PLACEHOLDERS = {"int": "INTEGER", "float": "NUMBER", "str": "TEXT", "path": "PATH", "Path": "PATH"}


def tidy_placeholders(command: Any) -> Any:
    """The command, with every parameter of it and its subcommands given a conventional placeholder."""
    for param in getattr(command, "params", ()):
        if param.param_type_name == "argument":
            _tidy_argument(param)
        elif getattr(param, "is_flag", False):
            param.metavar = ""
        elif param.metavar is None:
            param.metavar = _placeholder(param)
    _tidy_help_option(command)
    for sub in getattr(command, "commands", {}).values():
        tidy_placeholders(sub)
    return command


def _tidy_help_option(command: Any) -> None:
    """--help is made per context, after the walk: tidy it as it is made."""
    make_help_option = command.get_help_option

    def help_option(ctx: Any) -> Any:
        option = make_help_option(ctx)
        if option is not None:
            option.metavar = ""
        return option

    command.get_help_option = help_option


def _placeholder(param: Any) -> str:
    shown = param.display_type_rich(ctx=None).strip("<>")
    if "|" in shown:  # choices are shown as they are
        return shown
    element = shown.removeprefix("list[").removesuffix("]")
    return PLACEHOLDERS.get(element, element.upper())


def _tidy_argument(param: Any) -> None:
    name = (param.metavar or param.name).upper()
    param.metavar = name
    repeated = name + ("..." if param.nargs != 1 else "")
    param.display_type_rich = lambda ctx=None: None
    param._rich_display_name = lambda: repeated
    param._usage_display_name = lambda: repeated if param.required else f"[{repeated}]"
