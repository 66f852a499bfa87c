"""The one JSON reader for everything the tool reads (package.json, rectangles, JSONL manifests, sidecars, caches).

JSON from a file is input like any other. Python's ``json`` has three ways to fail that are not "invalid JSON":
a deeply nested text overflows the parser's recursion (RecursionError, or worse in a thread with a small stack), an
integer of more than 4300 digits raises ValueError from ``int()`` (and below that limit costs quadratic time), and a
huge file is read whole. Here nesting is measured before parsing (strings removed by one regular expression, then a
running sum of brackets in numpy: about 5 ms per MB), numbers are limited in length, and the size is bounded, so
every failure is one :class:`JsonProblem` sentence naming the source.
"""

from __future__ import annotations

import json
import os
import re
import stat
from pathlib import Path

import numpy as np

from lipsync_render.errors import LipsyncError

MAX_DEPTH = 64  # the deepest structure any of our files has is 4 levels
MAX_NUMBER_CHARS = 64  # an int64 has 19 digits, a float's repr at most 24 characters
DEFAULT_MAX_BYTES = 16 << 20
_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_BRACKETS = np.zeros(256, np.int8)
_BRACKETS[[ord("["), ord("{")]] = 1
_BRACKETS[[ord("]"), ord("}")]] = -1


class JsonProblem(LipsyncError):
    """A JSON text that cannot be read within the bounds; the message is one sentence naming its source."""


def nesting_depth(data: bytes) -> int:
    """The deepest nesting of arrays and objects in a JSON text (brackets inside strings ignored)."""
    if b"[" not in data and b"{" not in data:
        return 0
    stripped = _STRING.sub(b"", data)
    steps = _BRACKETS[np.frombuffer(stripped, np.uint8)]
    return int(np.cumsum(steps, dtype=np.int64).max(initial=0))


def _number(kind):
    def parse(text: str):
        if len(text) > MAX_NUMBER_CHARS:
            raise _TooLong(len(text))
        return kind(text)

    return parse


class _TooLong(Exception):
    pass


def loads(text: str | bytes, where: str | os.PathLike, max_depth: int = MAX_DEPTH) -> object:
    """Parse a JSON text; :class:`JsonProblem` naming ``where`` when it is invalid, too deep or has a huge number."""
    data = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else bytes(text)
    opened = data.count(b"[") + data.count(b"{")  # a bound on the depth that costs nothing (a JSONL row: 1)
    depth = nesting_depth(data) if opened > max_depth else opened
    if depth > max_depth:
        raise JsonProblem(f"{where} is nested too deeply ({depth} levels; at most {max_depth} are read).")
    try:
        decoded = data.decode("utf-8") if isinstance(text, bytes | bytearray | memoryview) else text
        return json.loads(decoded, parse_int=_number(int), parse_float=_number(float))
    except _TooLong as exc:
        raise JsonProblem(
            f"{where} holds a number of {exc.args[0]} characters; at most {MAX_NUMBER_CHARS} are read."
        ) from None
    except json.JSONDecodeError as exc:
        raise JsonProblem(f"{where} is not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno}).") from None
    except UnicodeDecodeError as exc:
        raise JsonProblem(f"{where} is not UTF-8 text ({exc.reason} at byte {exc.start}).") from None
    except (RecursionError, ValueError) as exc:  # a parser limit the checks above did not foresee
        raise JsonProblem(f"{where} cannot be read as JSON ({type(exc).__name__}).") from None


def read(path: str | os.PathLike, max_bytes: int = DEFAULT_MAX_BYTES, max_depth: int = MAX_DEPTH) -> object:
    """A JSON file of at most ``max_bytes``; :class:`JsonProblem` saying why it cannot be read."""
    path = Path(path)
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            raise JsonProblem(f"{path} is not a regular file.")
        with open(path, "rb") as file:
            size = os.fstat(file.fileno()).st_size
            if size > max_bytes:
                raise JsonProblem(f"{path} is {size} bytes; at most {max_bytes} are read.")
            data = file.read(max_bytes + 1)
    except OSError as exc:
        raise JsonProblem(f"{path} cannot be read ({exc.strerror or exc}).") from None
    if len(data) > max_bytes:
        raise JsonProblem(f"{path} is over {max_bytes} bytes; at most {max_bytes} are read.")
    return loads(data, path, max_depth)
