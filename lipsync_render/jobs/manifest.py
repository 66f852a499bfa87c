"""Job manifests (``JOBS.csv`` or ``JOBS.jsonl``): one render per row, ``audio``, ``model``, ``output`` and options.

The option columns are the manifest-settable options of ``lipsync_render.options``; a malformed manifest stops
before any work with one sentence naming the file and line.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from lipsync_render import json_bounded
from lipsync_render.errors import LipsyncError
from lipsync_render.options import JOBS, RenderOptions, SessionOptions, options_for, parse_value, split_options
from lipsync_render.package.locate import names_a_path
from lipsync_render.paths import first_collision, first_overwritten_input
from lipsync_render.storage.urls import is_url, parse_location

REQUIRED_COLUMNS = ("audio", "model")
# Where each column name leads: the option's own name and its aliases. frames_dir is not one: one frames folder
# per job is not a batch use case, and jobs must not write outside their output.
OPTION_COLUMNS = {column: o.name for o in options_for(JOBS) for column in o.columns}
KNOWN_COLUMNS = (*REQUIRED_COLUMNS, "output", *OPTION_COLUMNS)


@dataclass
class Job:
    """One render: an audio file, a package and an output, with the row it came from.

    Each of the three is a location: an absolute local path, or a URL (``s3://``, ``gs://``, ``az://``, ``https://``
    for reading, ``file://``) checked by ``storage.parse_location``; a model may also be a bare package name.
    """

    audio: str
    model: str
    output: str
    session: SessionOptions
    render: RenderOptions
    source: str  # "JOBS.csv, line 4": where to look when it fails

    @property
    def renderer_key(self) -> tuple:
        """Jobs with equal keys can share one loaded Renderer."""
        return (self.model, self.session)


def read_jobs(path: str | os.PathLike, out_dir: str | os.PathLike | None = None) -> list[Job]:
    """Jobs from a CSV or JSONL manifest; relative paths are taken from the manifest's directory.

    A row without an output goes to ``out_dir/AUDIO_STEM.mp4``. Raises LipsyncError naming the file and line of
    the first malformed row.
    """
    path = Path(path)
    if not path.is_file():
        raise LipsyncError(f"Job manifest {path} does not exist.")
    readers = {".csv": _csv_rows, ".jsonl": _jsonl_rows, ".ndjson": _jsonl_rows}
    if path.suffix.lower() not in readers:
        raise LipsyncError(f"Job manifest {path} must be a .csv or .jsonl file.")
    base = path.resolve().parent
    if out_dir is not None:
        out_dir = str(out_dir) if is_url(str(out_dir)) else str(Path(out_dir).resolve())
    jobs = [
        _job_from_row(row, f"{path}, line {line}", base, out_dir) for line, row in readers[path.suffix.lower()](path)
    ]
    if not jobs:
        raise LipsyncError(f"Job manifest {path} lists no jobs.")
    _check_outputs(jobs)
    return jobs


def _csv_rows(path: Path) -> Iterable[tuple[int, dict]]:
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f, skipinitialspace=True)
            header = [name.strip() for name in reader.fieldnames or []]
            if not header:
                return
            reader.fieldnames = header
            _check_columns(header, f"{path}, line 1", "column")
            for row in reader:
                if None in row:
                    raise LipsyncError(f"{path}, line {reader.line_num}: the row has more cells than the header.")
                yield reader.line_num, {k: v.strip() for k, v in row.items() if v is not None and v.strip()}
    except (UnicodeDecodeError, csv.Error) as exc:
        raise LipsyncError(f"{path} is not a readable CSV file ({exc}).") from None


def _jsonl_rows(path: Path) -> Iterable[tuple[int, dict]]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as exc:
        raise LipsyncError(f"{path} is not a UTF-8 text file ({exc}).") from None
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json_bounded.loads(line, f"{path}, line {number}")
        except json_bounded.JsonProblem as exc:
            raise LipsyncError(str(exc).replace(f"line {number} is ", f"line {number}: ", 1)) from None
        if not isinstance(row, dict):
            raise LipsyncError(f"{path}, line {number}: each line must be one JSON object.")
        _check_columns(list(row), f"{path}, line {number}", "key")
        yield number, {k: v for k, v in row.items() if v is not None and v != ""}


def _check_columns(names: list[str], where: str, word: str) -> None:
    unknown = [n for n in names if n not in KNOWN_COLUMNS]
    if unknown:
        raise LipsyncError(f"{where}: unknown {word} '{unknown[0]}' (known: {', '.join(KNOWN_COLUMNS)}).")
    missing = [n for n in REQUIRED_COLUMNS if n not in names]
    if missing:
        raise LipsyncError(
            f"{where}: no '{missing[0]}' {word} (every job needs audio and model, and an output "
            "unless --out-dir is given)."
        )
    named = [OPTION_COLUMNS[n] for n in names if n in OPTION_COLUMNS]
    twice = [n for n in named if named.count(n) > 1]
    if twice:
        raise LipsyncError(f"{where}: the option '{twice[0]}' is given twice (under its name and an alias).")


def _job_from_row(row: dict, where: str, base: Path, out_dir: str | None) -> Job:
    for name in REQUIRED_COLUMNS:
        if name not in row:
            raise LipsyncError(f"{where}: the '{name}' cell is empty.")
    try:
        audio = _location(str(row["audio"]), base, "Audio")
        if "output" in row:
            output = _location(str(row["output"]), base, "Output", for_writing=True)
        elif out_dir is not None:
            output = _beside(out_dir, f"{_stem(audio)}.mp4")
        else:
            raise LipsyncError("no output is given and no --out-dir to put it in.")
        values = {
            OPTION_COLUMNS[column]: parse_value(OPTION_COLUMNS[column], value)
            for column, value in row.items()
            if column in OPTION_COLUMNS
        }
        session, render = split_options(values)
        model = _model_reference(str(row["model"]), base)
    except LipsyncError as exc:
        raise type(exc)(f"{where}: {exc}") from None
    return Job(
        audio=audio,
        model=model,
        output=output,
        session=session,
        render=render,
        source=where,
    )


def _location(text: str, base: Path, what: str, for_writing: bool = False) -> str:
    """A URL as given (scheme and credentials checked), or a local path made absolute from the manifest's folder."""
    loc = parse_location(text, for_writing=for_writing, what=what)
    if loc.remote:
        return loc.text
    return str(loc.path if loc.path.is_absolute() else base / loc.path)


def _model_reference(text: str, base: Path) -> str:
    """A package URL or path (taken from the manifest's folder); a bare name is looked up as usual when loaded."""
    if is_url(text) or names_a_path(text):
        return _location(text, base, "Package")
    return text


def _stem(location: str) -> str:
    """The file name of a location without its suffix: ``s3://b/talks/a.wav`` -> ``a``."""
    return PurePosixPath(location.split("?", 1)[0].rstrip("/")).stem if is_url(location) else Path(location).stem


def _beside(folder: str, name: str) -> str:
    """``name`` in a folder given as a local path or a URL."""
    if is_url(folder):
        return parse_location(folder.rstrip("/") + "/" + name, for_writing=True, what="Output").text
    return str(Path(folder) / name)


def _check_outputs(jobs: list[Job]) -> None:
    """No two jobs write one file, and no job writes onto any job's audio."""
    collision = first_collision([(job.source, job.output) for job in jobs])
    if collision:
        first, second, output = collision
        raise LipsyncError(f"{second}: writes {output}, which {first} writes too.")
    overwritten = first_overwritten_input([job.output for job in jobs], [job.audio for job in jobs])
    if overwritten:
        output, audio = overwritten
        source = next(job.source for job in jobs if job.output == output)
        raise LipsyncError(f"{source}: writes {output}, which is the audio input {audio}; refusing to overwrite it.")
