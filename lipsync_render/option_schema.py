"""The option schema: how an option is declared (a dataclass field with an :class:`OptionSpec`), checked and parsed.

The catalogue of options itself is ``options.py``; this module knows nothing of any particular option, so the
rules for values (bounds, choices, patterns, manifest text) are written once for all of them.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import re
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lipsync_render.errors import OptionError

CLI, JOBS, BENCH = "cli", "jobs", "bench"  # where an option can be set: flags, manifest columns, bench flags
EVERYWHERE = frozenset({CLI, JOBS, BENCH})


@dataclass(frozen=True)
class OptionSpec:
    """What an option may hold and where it appears; the name, type and default come from its dataclass field."""

    help: str
    choices: tuple[str, ...] | None = None
    minimum: int | None = None
    maximum: int | None = None
    pattern: str | None = None  # a regular expression the whole value must match (ignoring case)
    metavar: str | None = None
    label: str | None = None  # how sentences name it; default: the name in words ("batch size")
    changes_output: bool = False  # a finished output made with another value is stale (sidecar check)
    flags: tuple[str, ...] = ()  # CLI flags; default --name-with-dashes
    aliases: tuple[str, ...] = ()  # other manifest column names
    surfaces: frozenset[str] = EVERYWHERE  # where it can be set besides the Python API
    check: Callable[[Any], str | None] | None = None  # a further rule: the problem as a clause, or None


def option(default: Any, help: str, **spec: Any) -> Any:
    """A dataclass field with its spec."""
    return field(default=default, metadata={"spec": OptionSpec(help, **spec)})


class Checked:
    """Validates every field against its spec when the object is made (and on ``dataclasses.replace``)."""

    def __post_init__(self) -> None:
        for declared in declared_options(type(self)).values():
            check(declared, getattr(self, declared.name))


@dataclass(frozen=True)
class Option:
    """One option as the derived surfaces see it."""

    name: str
    kind: type  # int, str, bool or Path (None is allowed where the default is None)
    default: Any
    spec: OptionSpec
    scope: type  # the options class that declares it

    @property
    def flags(self) -> tuple[str, ...]:
        return self.spec.flags or ("--" + self.name.replace("_", "-"),)

    @property
    def columns(self) -> tuple[str, ...]:
        """Manifest column names: the option's own, then its aliases."""
        return (self.name, *self.spec.aliases)


@functools.cache
def declared_options(scope: type) -> dict[str, Option]:
    """The options an options dataclass declares, by name, in definition order."""
    hints = typing.get_type_hints(scope)
    found = {}
    for option_field in dataclasses.fields(scope):
        hint = hints[option_field.name]
        kind = next(t for t in typing.get_args(hint) or (hint,) if t is not type(None))
        found[option_field.name] = Option(
            option_field.name, kind, option_field.default, option_field.metadata["spec"], scope
        )
    return found


def check(o: Option, value: Any) -> None:
    """Raise OptionError unless ``value`` is allowed for option ``o``."""
    name = o.name
    label = o.spec.label or name.replace("_", " ").capitalize()
    if value is None:
        if o.default is not None:
            raise OptionError(f"{label} needs a value.")
        return
    if o.kind is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise OptionError(f"{label} must be a whole number (got {value!r}).")
    if o.kind is float and (isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value)):
        raise OptionError(f"{label} must be a number (got {value!r}).")
    if o.kind not in (int, float) and not isinstance(value, o.kind):
        raise OptionError(f"{label} must be {o.kind.__name__} (got {value!r}).")
    spec = o.spec
    if spec.choices is not None and value not in spec.choices:
        raise OptionError(f"{label} must be one of {', '.join(spec.choices)} (got '{value}').")
    if spec.pattern is not None and not re.fullmatch(spec.pattern, value, re.IGNORECASE):
        raise OptionError(f"Unknown {label.lower()} '{value}': use {spec.metavar or spec.pattern}.")
    if (spec.minimum is not None and value < spec.minimum) or (spec.maximum is not None and value > spec.maximum):
        bounds = f"at least {spec.minimum}" + ("" if spec.maximum is None else f" and at most {spec.maximum}")
        raise OptionError(f"{label} must be {bounds} (got {value}).")
    if spec.check is not None and (problem := spec.check(value)):
        raise OptionError(f"{label} {problem} (got '{value}').")


TRUE_WORDS, FALSE_WORDS = ("1", "true", "yes"), ("0", "false", "no")


def parse(o: Option, value: Any) -> Any:
    """A manifest cell (text, or a JSON value) as option ``o``'s type; OptionError when it is not one."""
    name = o.name
    text = str(value).strip()
    if o.kind is bool and not isinstance(value, bool):
        if text.lower() not in TRUE_WORDS + FALSE_WORDS:
            raise OptionError(f"{name} must be true or false (got '{text}').")
        return text.lower() in TRUE_WORDS
    if o.kind is int and not isinstance(value, bool) and re.fullmatch(r"[+-]?\d{1,18}", text):
        return int(text)
    if o.kind is int:
        raise OptionError(f"{name} must be a whole number (got '{text}').")
    if o.kind is float and not isinstance(value, bool):
        try:
            return float(text)
        except ValueError:
            raise OptionError(f"{name} must be a number (got '{text}').") from None
    if o.kind is Path:
        return Path(text)
    return value if isinstance(value, bool) else text
