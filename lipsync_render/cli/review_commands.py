"""The `lipsync review` command: a page to review a batch of outputs at a glance."""

from __future__ import annotations

from pathlib import Path

import typer

from lipsync_render.cli.exits import fail, user_errors


@user_errors
def review_command(
    outputs: list[Path] = typer.Argument(..., help="Rendered MP4s (their X.mp4.json sidecars are read when present)."),
    page: Path = typer.Option(..., "-o", "--output", help="The HTML page to write (self-contained, works offline)."),
    model: str | None = typer.Option(
        None, "--model", "-m", help="Package of the outputs whose sidecar names none (a plain `lipsync render`)."
    ),
) -> None:
    """Write one HTML page with a card per output: poster, status, speed, and whether the mouth follows the audio."""
    from lipsync_render.review import review_outputs

    if page.suffix.lower() not in (".html", ".htm"):
        fail(f"the review page must be an .html file (got '{page}').", 2)
    reviews = review_outputs(outputs, page, model)
    flagged = sum(review.flagged for review in reviews)
    typer.echo(f"wrote {page}: {len(reviews)} output(s), {flagged} flagged")
