"""The rules of the option values that a choice list or a bound cannot say: frame sizes and feather widths."""

from __future__ import annotations

import re

SIZE_PATTERN = r"(\d{1,5})x(\d{1,5})"
MIN_SIDE, MAX_SIDE = 16, 4096
BLEND_PATTERN = r"hard|feather(:\d+)?"
FEATHER_PIXELS = 16  # --blend feather's ramp width on the 320-pixel model region (README: chosen by looking)
FEATHER_RANGE = (1, 64)  # a ramp wider than a fifth of the region would fade the mouth itself


def frame_size(value: str) -> tuple[int, int]:
    """A WxH option value as (width, height)."""
    width, height = re.fullmatch(SIZE_PATTERN, value, re.IGNORECASE).groups()
    return int(width), int(height)


def size_problem(value: str) -> str | None:
    width, height = frame_size(value)
    if not all(MIN_SIDE <= side <= MAX_SIDE and side % 2 == 0 for side in (width, height)):
        return f"needs an even width and height from {MIN_SIDE} to {MAX_SIDE}"
    return None


def feather_pixels(blend: str) -> int:
    """The ramp width in pixels of a ``--blend`` value: 0 for hard, FEATHER_PIXELS for a bare ``feather``."""
    kind, _, pixels = blend.lower().partition(":")
    if kind == "hard":
        return 0
    return int(pixels) if pixels else FEATHER_PIXELS


def feather_problem(blend: str) -> str | None:
    low, high = FEATHER_RANGE
    if blend.lower() != "hard" and not low <= feather_pixels(blend) <= high:
        return f"needs a feather width of {low} to {high} pixels"
    return None
