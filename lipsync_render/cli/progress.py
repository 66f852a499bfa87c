"""CLI progress: rich bars on stderr (terminals only), a line per file or job, and a closing summary."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from lipsync_render.errors import LipsyncError
from lipsync_render.rendering.result import RenderResult

if TYPE_CHECKING:
    from lipsync_render.jobs import JobResult


class RenderReporter:
    """Follows renders for the CLI: a bar with fps and ETA while one runs, a line per result, a closing summary."""

    def __init__(self, enabled: bool = True):
        self.console = Console(stderr=True, highlight=False)
        self.enabled = enabled
        self.show_bar = enabled and sys.stderr.isatty()
        self.results: list[RenderResult] = []

    @contextmanager
    def frames(self, path: Path) -> Iterator[Callable[[int, int], None] | None]:
        """The ``on_progress(done, total)`` callback for a render of ``path``, drawing its bar while inside (None
        when no bar is shown)."""
        if not self.show_bar:
            yield None
            return
        columns = [
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[fps]:.1f} fps"),
            TimeRemainingColumn(),
        ]
        with Progress(*columns, console=self.console, transient=True) as progress:
            task = progress.add_task(path.name, total=None, fps=0.0)

            def update(done: int, total: int) -> None:
                elapsed = progress.tasks[0].elapsed or 0.0
                progress.update(task, completed=done, total=total, fps=done / elapsed if elapsed else 0.0)

            yield update

    def finished(self, result: RenderResult) -> None:
        """One line for a finished render."""
        self.results.append(result)
        if self.enabled:
            wall = result.seconds.get("total", 0.0)
            idle = f" ({result.idle_frames} idle)" if result.idle_frames else ""
            self.console.print(
                f"ok  {result.input} -> {result.output}  {result.frames} frames{idle}, "
                f"{result.duration:.2f} s audio in {wall:.1f} s "
                f"({result.duration / wall if wall else 0:.2f}x real time), {result.fps:.1f} fps "
                f"({result.backend} {result.precision} on {', '.join(result.providers)})",
                markup=False,
                soft_wrap=True,
            )

    def failed(self, path: Path, exc: LipsyncError) -> RenderResult:
        """One line for a render that failed, and its result."""
        result = RenderResult(input=str(path), output=None, status="error", error=str(exc))
        self.results.append(result)
        where = "" if str(path) in str(exc) else f"{path}: "
        self.console.print(f"error: {where}{exc}", markup=False, soft_wrap=True)
        return result

    def summary(self) -> None:
        """One closing line when several files were rendered or any failed."""
        failed = sum(r.status != "ok" for r in self.results)
        if self.enabled and (len(self.results) > 1 or failed):
            self.console.print(f"{len(self.results) - failed} rendered, {failed} failed", markup=False, soft_wrap=True)


class JobReporter:
    """Progress bars over all jobs and over the frames of the job rendering now (stderr, terminals only), a line
    per job and a closing summary."""

    def __init__(self, total: int, enabled: bool = True):
        from rich.console import Console

        self.console = Console(stderr=True, highlight=False)
        self.total = total
        self.enabled = enabled
        self.results: list[JobResult] = []
        self.progress = None
        self.task = self.frames_task = None

    def __enter__(self) -> JobReporter:
        if self.enabled and sys.stderr.isatty():
            self.progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[rate]}"),
                TimeRemainingColumn(),
                console=self.console,
                transient=True,
            )
            self.progress.start()
            self.task = self.progress.add_task("jobs", total=self.total, rate="")
            self.frames_task = self.progress.add_task("frames", total=None, rate="", visible=False)
        return self

    def frames(self, job, done: int, total: int) -> None:
        """Follow the frames of the job rendering now."""
        if self.progress is None:
            return
        task = self.progress.tasks[self.frames_task]
        name = job.audio.rstrip("/").rsplit("/", 1)[-1]
        if done <= 1 or task.description != name:
            self.progress.reset(self.frames_task, total=total, description=name, visible=True)
        elapsed = task.elapsed or 0.0
        rate = f"{done / elapsed:.1f} fps" if elapsed else ""
        self.progress.update(self.frames_task, completed=done, total=total, rate=rate)

    def __exit__(self, *exc) -> None:
        if self.progress is not None:
            self.progress.stop()

    def add(self, result: JobResult) -> None:
        """Print one line for a finished job and advance the bar."""
        self.results.append(result)
        if self.enabled:
            self.console.print(_describe(result), markup=False, soft_wrap=True)
        if self.progress is not None:
            self.progress.advance(self.task)

    def summary(self) -> None:
        if not self.enabled:
            return
        counts = {status: sum(r.status == status for r in self.results) for status in ("ok", "skipped", "error")}
        not_run = self.total - len(self.results)
        retries = sum(len(r.retried) for r in self.results)
        line = f"{counts['ok']} rendered, {counts['skipped']} skipped, {counts['error']} failed"
        line += (f", {not_run} not run" if not_run else "") + (f", {retries} retried" if retries else "")
        self.console.print(line, markup=False, soft_wrap=True)
        for node, text in per_node(self.results).items():
            self.console.print(f"  node {node}: {text}", markup=False, soft_wrap=True)


def _describe(result: JobResult) -> str:
    where = f" on node {result.node}" if result.node else ""
    retried = f" after {len(result.retried)} retr{'y' if len(result.retried) == 1 else 'ies'}" if result.retried else ""
    if result.status == "error":
        return f"error: {result.job}: {result.error}{retried}"
    if result.status == "skipped":
        return f"skip  {result.output} (up to date{', checked' + where if where else ''})"
    render = result.render
    return f"ok    {render.input} -> {render.output}  {render.frames} frames, {render.fps:.1f} fps{where}{retried}"


def per_node(results: list[JobResult]) -> dict[str, str]:
    """Jobs, retries and frames per second of each Ray node that rendered (empty for a local run)."""
    nodes: dict[str, list[JobResult]] = {}
    for result in results:
        if result.node:
            nodes.setdefault(result.node, []).append(result)
    lines = {}
    for node, done in sorted(nodes.items()):
        rendered = [r for r in done if r.status == "ok"]
        frames = sum(r.render.frames for r in rendered)
        seconds = sum(r.render.seconds.get("total", 0.0) for r in rendered)
        retries = sum(len(r.retried) for r in done)
        fps = f"{frames / seconds:.1f} fps" if seconds else "no render"
        lines[node] = f"{len(rendered)} rendered of {len(done)} jobs, {retries} retried, {fps}"
    return lines
