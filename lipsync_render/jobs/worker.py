"""Running jobs with one loaded Renderer, reloading only when a job needs another package or session options.

The same worker runs jobs here and inside Ray tasks. Resume is decided here, by the worker that would render the
job, against the session plan it would render with (the loaded Renderer's own plan, else one made without
measuring), never by another machine's guess.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from lipsync_render.errors import LipsyncError
from lipsync_render.jobs.job_files import lease_package, local_audio, package_checksum
from lipsync_render.jobs.manifest import Job
from lipsync_render.jobs.result import JobResult
from lipsync_render.jobs.sidecar import (
    is_up_to_date,
    recorded_result,
    remove_sidecar,
    sidecar_path,
    sidecar_record,
    write_sidecar,
)
from lipsync_render.package import load_package
from lipsync_render.planning.session_plan import plan_session
from lipsync_render.rendering.partials import remove_stale_partials
from lipsync_render.rendering.renderer import Renderer
from lipsync_render.storage import is_url, staged_output
from lipsync_render.storage.package_cache import PackageLease

__all__ = ["JobResult", "JobWorker", "grouped"]


class JobWorker:
    """Renders jobs one after another; used as is for local runs and inside Ray tasks for cluster runs."""

    def __init__(self, single_gpu: bool = False, threads: int = 0):
        self.single_gpu = single_gpu  # a Ray GPU task sees exactly one GPU, as cuda:0
        self.threads = threads  # inference threads when a job leaves them at 0 (all cores)
        self.renderer: Renderer | None = None
        self.lease: PackageLease | None = None  # the renderer's package, kept from cache eviction
        self.key: tuple | None = None
        self.load_error: LipsyncError | None = None
        self.plans: dict[tuple, dict | None] = {}  # renderer key -> the plan's output identity here

    def run(
        self,
        job: Job,
        on_progress: Callable[[int, int], None] | None = None,
        skip_existing: bool = False,
        cancelled: Callable[[], bool] | None = None,
    ) -> JobResult:
        """Render one job and record it beside its output (or, with ``skip_existing``, skip it when its output is
        up to date for the plan this worker would use); failures become an error result. ``on_progress(done,
        total)`` follows its frames; ``cancelled()`` stops an upload in progress."""
        job = self._adapt(job)
        host = socket.gethostname()
        try:
            with local_audio(job) as audio:
                renderer = self._renderer_for(job, load=not skip_existing)
                checksum = package_checksum(job.model, self.lease)
                if skip_existing:
                    identity = self._plan_identity(job)
                    record = is_up_to_date(job, audio, checksum, identity)
                    if record is not None:
                        return JobResult(job.source, job.model, recorded_result(job, record), host)
                    renderer = self._renderer_for(job)
                result = self._render(renderer, job, audio, checksum, on_progress, cancelled)
        except LipsyncError as exc:
            return JobResult.for_job(job, host, status="error", error=str(exc))
        except OSError as exc:
            message = f"Could not write {exc.filename or job.output}: {exc.strerror or exc}."
            return JobResult.for_job(job, host, status="error", error=message)
        return JobResult(job.source, job.model, result, host)

    def _render(self, renderer: Renderer, job: Job, audio: Path, checksum: str, on_progress, cancelled):
        """Render to the output (a remote one staged locally and uploaded whole), then write its sidecar."""
        remove_sidecar(job.output)  # a new MP4 never stands beside the old one's sidecar
        if is_url(job.output):
            with staged_output(job.output, cancelled) as local:
                result = renderer.render(audio, local, job.render, on_progress=on_progress)
                record = sidecar_record(job, result, checksum, audio, local)
        else:
            local = Path(job.output)
            local.parent.mkdir(parents=True, exist_ok=True)
            remove_stale_partials(sidecar_path(local))
            result = renderer.render(audio, local, job.render, on_progress=on_progress)
            record = sidecar_record(job, result, checksum, audio, local)
        write_sidecar(job.output, record)
        return replace(result, input=job.audio, output=job.output)

    def _plan_identity(self, job: Job) -> dict | None:
        """The output identity of the plan this worker would render ``job`` with (None: not known without
        measuring, or the package cannot be read: rendering will say why)."""
        if self.renderer is not None and self.key == job.renderer_key:
            return self.renderer.plan.output_identity()
        if job.renderer_key not in self.plans:
            try:
                package = load_package(self.lease.path, verify_checksums=False)
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

    def _renderer_for(self, job: Job, load: bool = True) -> Renderer | None:
        """The Renderer for ``job``'s package and session, loaded once (``load=False``: only its package leased).
        A load failure is remembered for the jobs that share the key, and raised for each."""
        if self.key != job.renderer_key:
            self.close()
            self.key = job.renderer_key
            try:
                self.lease = lease_package(job.model)
            except LipsyncError as exc:
                self.load_error = exc
        if self.load_error is not None:
            raise self.load_error
        if self.renderer is None and load:
            try:
                self.renderer = Renderer(self.lease.path, job.session)
            except LipsyncError as exc:
                self.load_error = exc
                raise
        return self.renderer

    def close(self) -> None:
        if self.renderer is not None:
            self.renderer.close()
        if self.lease is not None:
            self.lease.close()
        self.renderer, self.lease, self.key, self.load_error = None, None, None, None


def grouped(jobs: list[Job], indices: list[int]) -> list[int]:
    """Indices ordered so jobs sharing a renderer run back to back (groups in order of first appearance)."""
    first: dict[tuple, int] = {}
    for i in indices:
        first.setdefault(jobs[i].renderer_key, len(first))
    return sorted(indices, key=lambda i: first[jobs[i].renderer_key])
