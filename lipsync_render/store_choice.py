"""The frames store a package is built with (``--frames-store npy|jpeg[:Q]``) and its manifest entry.

Kept apart from ``package.frame_store`` (which decodes) so the CLI can define the option without importing
OpenCV or the package loader.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from lipsync_render.errors import OptionError

NPY, JPEG = "npy", "jpeg"
CODECS = (NPY, JPEG)
DEFAULT_JPEG_QUALITY = 90
JPEG_TILE = 256
FRAMES_STORE_HELP = (
    "How the package stores its frames: npy (raw, exact, 2.6 MiB a 1280x720 frame) or jpeg[:Q] "
    f"(tiled JPEG at quality Q 1-100, default {DEFAULT_JPEG_QUALITY}; about 20x smaller)."
)


@dataclass(frozen=True)
class StoreChoice:
    """A frames store chosen at build time: the codec and, for JPEG, the quality and tile size."""

    codec: str = NPY
    quality: int | None = None
    tile: int | None = None

    def __str__(self) -> str:
        return self.codec if self.quality is None else f"{self.codec}:{self.quality}"

    def manifest_entry(self) -> dict:
        entry = {"codec": self.codec}
        if self.codec == JPEG:
            entry.update(quality=self.quality, tile=self.tile)
        return entry


def parse_frames_store(text: str) -> StoreChoice:
    """``npy``, ``jpeg`` or ``jpeg:Q`` -> StoreChoice; OptionError (exit 2) for anything else."""
    codec, sep, quality = str(text).strip().lower().partition(":")
    if codec == NPY and not sep:
        return StoreChoice()
    if codec == JPEG and not sep:
        return StoreChoice(JPEG, DEFAULT_JPEG_QUALITY, JPEG_TILE)
    if codec == JPEG:
        if quality.isdigit() and 1 <= int(quality) <= 100:
            return StoreChoice(JPEG, int(quality), JPEG_TILE)
        raise OptionError(f"--frames-store jpeg:Q takes a JPEG quality Q from 1 to 100, not '{quality}'.")
    raise OptionError(f"--frames-store must be npy, jpeg or jpeg:Q (Q from 1 to 100), not '{text}'.")


def store_choice(manifest: dict) -> StoreChoice:
    """The store a checked manifest declares (format version 1 packages are always ``npy``)."""
    entry = manifest.get("frames_store") if manifest.get("format_version") != 1 else None
    entry = entry or {"codec": NPY}
    return StoreChoice(entry["codec"], entry.get("quality"), entry.get("tile"))


def check_store_entry(manifest: dict, path: Path) -> list[str]:
    """Problems of the manifest's ``frames_store`` entry and the files it needs (format version 2)."""
    entry = manifest.get("frames_store")
    if not isinstance(entry, dict) or entry.get("codec") not in CODECS:
        return [f"{path} lacks a valid 'frames_store' entry (an object whose 'codec' is one of {', '.join(CODECS)})."]
    problems = []
    if entry["codec"] == JPEG:
        quality, tile = entry.get("quality"), entry.get("tile")
        if type(quality) is not int or not 1 <= quality <= 100:
            problems.append(f"{path} says JPEG frames store quality {quality!r}; it must be an integer from 1 to 100.")
        if type(tile) is not int or not 16 <= tile <= 4096 or tile % 16:
            problems.append(f"{path} says JPEG tile size {tile!r}; it must be a multiple of 16 from 16 to 4096.")
    needs_index = entry["codec"] == JPEG
    if needs_index != isinstance(manifest["files"].get("frames_index"), str):
        problems.append(
            f"{path} {'does not name' if needs_index else 'names'} a 'frames_index' file under 'files'; the "
            f"{entry['codec']} frames store {'needs' if needs_index else 'has'} {'one' if needs_index else 'none'}."
        )
    return problems
