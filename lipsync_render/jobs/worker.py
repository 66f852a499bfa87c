"""Running jobs with one loaded Renderer, reloading only when a job needs another package or session options."""

from __future__ import annotations

import socket
from collections.abc import Callable
from dataclasses import dataclass, replace

from lipsync_render.errors import LipsyncError
from lipsync_render.jobs.manifest import Job
from lipsync_render.jobs.sidecar import is_up_to_date, recorded_result, sidecar_path, write_sidecar
from lipsync_render.package import load_package
from lipsync_render.planning.session_plan import plan_session
from lipsync_render.rendering.partials import remove_stale_partials
from lipsync_render.rendering.renderer import Renderer
from lipsync_render.rendering.result import RenderResult


@dataclass
class JobResult:
    """How one job went: the render's own result (status ok, skipped or error) with the job it belongs to and the
    host that ran it; ``--json`` prints one object per job, the render's fields beside the job's."""

    job: str  # where the job came from: "JOBS.csv, line 4"
    model: str  # the package as the manifest names it
    render: RenderResult
    host: str = ""

    @classmethod
    def for_job(cls, job: Job, host: str = "", **values) -> JobResult:
        """A result for ``job``; ``values`` are RenderResult fields (status, error, frames, ...)."""
        render = RenderResult(input=str(job.audio), output=str(job.output), **values)
        return cls(job=job.source, model=job.model, render=render, host=host)

    def __getattr__(self, name: str):
        """The render's fields read through the job result: ``result.status``, ``result.frames``, ..."""
        if name.startswith("__") or name == "render":  # not set yet (unpickling, copying): no recursion
            raise AttributeError(name)
        return getattr(self.render, name)

    def to_dict(self) -> dict:
        return {"job": self.job, "model": self.model, **self.render.to_dict(), "host": self.host}


class JobWorker:
    """Renders jobs one after another; used as is for local runs and wrapped as a Ray actor for cluster runs.

    Resume is decided here, by the worker that would render the job, against the session plan it would render
    with: the Renderer's own plan when it is loaded for the job, else a plan made without measuring.
    """

    def __init__(self, single_gpu: bool = False, threads: int = 0):
        self.single_gpu = single_gpu  # a Ray GPU actor sees exactly one GPU, as cuda:0
        self.threads = threads  # inference threads when a job leaves them at 0 (all cores)
        self.renderer: Renderer | None = None
        self.key: tuple | None = None
        self.load_error: str | None = None
        self.plans: dict[tuple, dict | None] = {}  # renderer key -> the plan's output identity here

    def run(
        self, job: Job, on_progress: Callable[[int, int], None] | None = None, skip_existing: bool = False
    ) -> JobResult:
        """Render one job and write its sidecar (or, with ``skip_existing``, skip it when its output is up to date
        for the plan this worker would use); failures become an error result. ``on_progress(done, total)``
        follows its frames."""
        job = self._adapt(job)
        host = socket.gethostname()
        if skip_existing and is_up_to_date(job, self._plan_identity(job)):
            return JobResult(job.source, job.model, recorded_result(job), host)
        try:
            renderer = self._renderer_for(job)
            job.output.parent.mkdir(parents=True, exist_ok=True)
            remove_stale_partials(sidecar_path(job.output))
            result = renderer.render(job.audio, job.output, job.render, on_progress=on_progress)
            write_sidecar(job, result, renderer.package.checksum)
        except LipsyncError as exc:
            return JobResult.for_job(job, host, status="error", error=str(exc))
        except OSError as exc:
            message = f"Could not write {exc.filename or job.output}: {exc.strerror or exc}."
            return JobResult.for_job(job, host, status="error", error=message)
        return JobResult(job.source, job.model, result, host)

    def _plan_identity(self, job: Job) -> dict | None:
        """The output identity of the plan this worker would render ``job`` with (None: not known without
        measuring, or the package cannot be read: rendering will say why)."""
        if self.renderer is not None and self.key == job.renderer_key:
            return self.renderer.plan.output_identity()
        if job.renderer_key not in self.plans:
            try:
                package = load_package(job.model, verify_checksums=False)
                plan = plan_session(package, job.session, measure=False)
                self.plans[job.renderer_key] = None if plan.precision is None else plan.output_identity()
            except LipsyncError:
                self.plans[job.renderer_key] = None
        return self.plans[job.renderer_key]

    def _adapt(self, job: Job) -> Job:
        session = job.session
        if self.single_gpu and ":" in session.device:
            session = replace(session, device=session.device.split(":")[0])
        if self.threads and session.threads == 0:
            session = replace(session, threads=self.threads)
        return job if session is job.session else replace(job, session=session)

    def _renderer_for(self, job: Job) -> Renderer:
        if self.key != job.renderer_key:
            self.close()
            self.key = job.renderer_key
            try:
                self.renderer = Renderer(job.model, job.session)
            except LipsyncError as exc:
                self.load_error = str(exc)
        if self.renderer is None:
            raise LipsyncError(self.load_error or "The renderer could not be loaded.")
        return self.renderer

    def close(self) -> None:
        if self.renderer is not None:
            self.renderer.close()
        self.renderer, self.key, self.load_error = None, None, None


def grouped(jobs: list[Job], indices: list[int]) -> list[int]:
    """Indices ordered so jobs sharing a renderer run back to back (groups in order of first appearance)."""
    first: dict[tuple, int] = {}
    for i in indices:
        first.setdefault(jobs[i].renderer_key, len(first))
    return sorted(indices, key=lambda i: first[jobs[i].renderer_key])
