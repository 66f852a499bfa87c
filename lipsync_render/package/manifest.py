"""What a package manifest may say: bounded reading, entry types and ranges, files kept inside the package.

A manifest is input like any other: it is read with a size and nesting bound, every number is checked as an
integer before use, every file it names must resolve (symbolic links followed) inside the package directory, and
checksums may only name those files.
"""

from __future__ import annotations

import os
from pathlib import Path

from lipsync_render import json_bounded
from lipsync_render.contract import VIDEO_FPS
from lipsync_render.paths import contained_path
from lipsync_render.store_choice import check_store_entry

FORMAT = "lipsync-package"
# 2 added the 'frames_store' entry (npy or jpeg); 3 allows null rectangles (frames without a face), which older
# readers would crash on, so a package is written as version 3 only when it has one. Versions 1 and 2 still load.
FORMAT_VERSION = 3
NULL_RECTS_VERSION = 3
READABLE_VERSIONS = (1, 2, FORMAT_VERSION)
MANIFEST = "package.json"
MAX_MANIFEST_BYTES = 1 << 20
MIN_SIDE, MAX_SIDE = 16, 4096  # frame width and height, pixels; even, for yuv420p
MAX_FRAMES = 1_000_000
REQUIRED_FILES = ("frames", "rects", "unet", "encoder")
OPTIONAL_FILES = ("features", "frames_index")


def read_manifest(path: Path) -> tuple[dict | None, list[str]]:
    """The manifest's JSON object, or the sentence saying why it cannot be read."""
    if not path.is_file():
        return None, [f"{path} is missing: not a model package."]
    manifest, problems = read_json(path, MAX_MANIFEST_BYTES)
    if not problems and not isinstance(manifest, dict):
        return None, [f"{path} must hold a JSON object."]
    return manifest, problems


def read_json(path: Path, max_bytes: int) -> tuple[object | None, list[str]]:
    """A JSON file of at most ``max_bytes`` (read by the one bounded reader), or the sentence saying why not."""
    try:
        return json_bounded.read(path, max_bytes), []
    except json_bounded.JsonProblem as exc:
        return None, [str(exc)]


def check_manifest(manifest: dict, path: Path) -> list[str]:
    """Every problem of the manifest's own entries (not yet of the files they name)."""
    if manifest.get("format") != FORMAT:
        return [f"{path} is not a lipsync package manifest (its 'format' is not '{FORMAT}')."]
    version = manifest.get("format_version")
    if type(version) is not int or version not in READABLE_VERSIONS:
        return [
            f"{path} has format_version {version!r}; this tool reads versions {', '.join(map(str, READABLE_VERSIONS))}."
        ]
    problems = []
    for key, kind in (
        ("name", str),
        ("fps", int),
        ("width", int),
        ("height", int),
        ("frame_count", int),
        ("files", dict),
        ("models", dict),
    ):
        if type(manifest.get(key)) is not kind:  # type(), not isinstance: true is not a frame rate
            problems.append(f"{path} lacks a valid '{key}' entry ({kind.__name__}).")
    if problems:
        return problems
    if manifest["fps"] != VIDEO_FPS:
        problems.append(
            f"{path} says fps {manifest['fps']}; the audio features are {VIDEO_FPS} per second by "
            f"construction, so a package must be {VIDEO_FPS} fps."
        )
    for key in ("width", "height"):
        value = manifest[key]
        if not MIN_SIDE <= value <= MAX_SIDE or value % 2:
            problems.append(f"{path} says {key} {value}; it must be an even number from {MIN_SIDE} to {MAX_SIDE}.")
    if not 1 <= manifest["frame_count"] <= MAX_FRAMES:
        problems.append(f"{path} says frame_count {manifest['frame_count']}; it must be from 1 to {MAX_FRAMES}.")
    files = manifest["files"]
    for role in REQUIRED_FILES:
        if not isinstance(files.get(role), str):
            problems.append(f"{path} does not name a '{role}' file under 'files'.")
    for role, rel in files.items():
        if role not in REQUIRED_FILES + OPTIONAL_FILES:
            problems.append(f"{path} names an unknown file role '{role}' under 'files'.")
        elif rel is not None and not isinstance(rel, str):
            problems.append(f"{path} names its '{role}' file with a {type(rel).__name__}, not a path.")
    if version >= 2:
        problems += check_store_entry(manifest, path)
    elif "frames_index" in files:
        problems.append(f"{path} is format version 1, whose frames are always frames.npy, but names a 'frames_index'.")
    for role in ("unet", "encoder"):
        entry = manifest["models"].get(role)
        if not (isinstance(entry, dict) and _names(entry.get("inputs")) and _names(entry.get("outputs"))):
            problems.append(f"{path} lacks the input/output names of the {role} model under 'models'.")
    checksums = manifest.get("checksums", {})
    if not isinstance(checksums, dict) or not all(isinstance(v, str) for v in checksums.values()):
        problems.append(f"{path} has a 'checksums' entry that is not an object of file names and sha256 digests.")
    return problems


def _names(value: object) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, str) for v in value)


def file_paths(manifest: dict, root: Path) -> tuple[dict[str, Path], list[str]]:
    """The package files by role, each inside the package, or the sentences saying which are not."""
    paths, problems = {}, []
    for role, rel in manifest["files"].items():
        if rel is None:
            continue
        path = contained_path(root, rel)
        if path is None:
            problems.append(
                f"{root / MANIFEST} names its {role} file '{rel}', which is outside the package "
                f"directory {root}; package files must lie inside it."
            )
        elif not path.is_file():
            problems.append(f"{path} is missing (the manifest lists it as the {role} file).")
        else:
            paths[role] = path
    return paths, problems


def checksum_entries(manifest: dict, root: Path) -> tuple[dict[Path, str], list[str], list[str]]:
    """(file -> expected sha256, problems, warnings): checksums may only name the package's own files."""
    checksums = manifest.get("checksums") or {}
    declared = {rel for rel in manifest["files"].values() if isinstance(rel, str)}
    problems = [
        f"{root / MANIFEST} lists a checksum for '{rel}', which is not one of the package's files."
        for rel in checksums
        if rel not in declared
    ]
    warnings = (
        [] if checksums else [f"{root / MANIFEST} has no checksums, so changed or corrupt files cannot be detected."]
    )
    entries = {root / rel: digest for rel, digest in checksums.items() if rel in declared}
    return entries, problems, warnings


def input_files(root: Path, manifest: dict | None = None) -> tuple[Path, ...]:
    """Every file of a package that no output may replace: the manifest, each file it names that lies inside the
    package, and every other regular file at the package's top level (external weights, notes): an input of any
    command that reads the package. ``manifest`` None: read here; an unreadable one names no files."""
    if manifest is None:
        try:
            manifest = json_bounded.read(root / MANIFEST, MAX_MANIFEST_BYTES)
        except json_bounded.JsonProblem:
            manifest = None
    files = manifest.get("files") if isinstance(manifest, dict) else None
    named = [rel for rel in files.values() if isinstance(rel, str)] if isinstance(files, dict) else []
    found = [root / MANIFEST, *(path for rel in named if (path := contained_path(root, rel)) is not None)]
    try:
        with os.scandir(root) as entries:
            found += [
                Path(entry.path) for _, entry in zip(range(10_000), entries) if entry.is_file(follow_symlinks=False)
            ]
    except OSError:
        pass
    return tuple(dict.fromkeys(found))
