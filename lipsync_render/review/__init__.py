"""``lipsync review``: one self-contained HTML page to spot the bad outputs of a batch without watching them.

``signals`` measures mouth motion and loudness per frame and their best lag, ``summary`` reviews one output
(sidecar, probe, poster, sync), ``page`` writes the page."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from lipsync_render.paths import write_file_atomically
from lipsync_render.review.page import render_page
from lipsync_render.review.summary import OutputReview, review_output

__all__ = ["OutputReview", "review_output", "review_outputs"]


def review_outputs(
    outputs: Sequence[str | os.PathLike], target: str | os.PathLike, model: str | None = None
) -> list[OutputReview]:
    """Review each output and write the page to ``target`` atomically (RenderError, exit 6, where it cannot go);
    ``model`` is the package of outputs whose sidecar names none."""
    outputs = [Path(p) for p in outputs]
    target = Path(target)
    reviews = [review_output(path, model) for path in outputs]
    page = render_page(reviews, target.parent)
    write_file_atomically(target, lambda temporary: temporary.write_text(page, encoding="utf-8"), tuple(outputs))
    return reviews
