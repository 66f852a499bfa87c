"""Progress and per-file reporting for the CLI: a rich bar on stderr (terminals only) and a summary."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from lipsync_render.errors import LipsyncError
from lipsync_render.pipeline import RenderResult


class ProgressReporter:
    """Runs renders one by one, showing a bar with fps and ETA, and collects their results."""

    def __init__(self, enabled: bool = True):
        self.console = Console(stderr=True, highlight=False)
        self.enabled = enabled
        self.show_bar = enabled and sys.stderr.isatty()
        self.results: list[RenderResult] = []

    def run(self, path: Path, render: Callable[[Callable[[int, int], None] | None], RenderResult]) -> RenderResult:
        """Call ``render(on_progress)``; a LipsyncError becomes a failed result, not an exception."""
        try:
            if self.show_bar:
                result = self._with_bar(path, render)
            else:
                result = render(None)
        except LipsyncError as exc:
            result = RenderResult(input=str(path), output=None, status="error", error=str(exc))
            where = "" if str(path) in str(exc) else f"{path}: "
            self.console.print(f"error: {where}{exc}", markup=False, soft_wrap=True)
        else:
            if self.enabled:
                self.console.print(
                    f"ok  {result.input} -> {result.output}  {result.frames} frames, {result.duration:.2f} s audio, "
                    f"{result.fps:.1f} fps", markup=False, soft_wrap=True)
        self.results.append(result)
        return result

    def _with_bar(self, path: Path, render) -> RenderResult:
        columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("{task.fields[fps]:.1f} fps"), TimeRemainingColumn()]
        with Progress(*columns, console=self.console, transient=True) as progress:
            task = progress.add_task(path.name, total=None, fps=0.0)

            def update(done: int, total: int) -> None:
                elapsed = progress.tasks[0].elapsed or 0.0
                progress.update(task, completed=done, total=total, fps=done / elapsed if elapsed else 0.0)

            return render(update)

    def summary(self) -> None:
        """One closing line when several files were rendered or any failed."""
        failed = sum(r.status != "ok" for r in self.results)
        if self.enabled and (len(self.results) > 1 or failed):
            self.console.print(f"{len(self.results) - failed} rendered, {failed} failed", markup=False, soft_wrap=True)
