"""Running jobs with one loaded Renderer, reloading only when a job needs another package or session options."""

from __future__ import annotations

import socket
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace

from lipsync_render.errors import LipsyncError
from lipsync_render.jobs.manifest import Job
from lipsync_render.jobs.sidecar import sidecar_path, write_sidecar
from lipsync_render.rendering.partials import remove_stale_partials
from lipsync_render.rendering.renderer import Renderer


@dataclass
class JobResult:
    """How one job went: status is ok, skipped or error; ``--json`` prints one object per job."""

    job: str
    input: str
    output: str
    model: str
    status: str = "ok"
    error: str | None = None
    frames: int = 0
    duration: float = 0.0
    fps: float = 0.0
    seconds: dict[str, float] = field(default_factory=dict)
    providers: list[str] = field(default_factory=list)
    host: str = ""

    @classmethod
    def for_job(cls, job: Job, **values) -> JobResult:
        return cls(job=job.source, input=str(job.audio), output=str(job.output), model=job.model, **values)

    def to_dict(self) -> dict:
        return asdict(self)


class JobWorker:
    """Renders jobs one after another; used as is for local runs and wrapped as a Ray actor for cluster runs."""

    def __init__(self, single_gpu: bool = False, threads: int = 0):
        self.single_gpu = single_gpu  # a Ray GPU actor sees exactly one GPU, as cuda:0
        self.threads = threads  # inference threads when a job leaves them at 0 (all cores)
        self.renderer: Renderer | None = None
        self.key: tuple | None = None
        self.load_error: str | None = None

    def run(self, job: Job, on_progress: Callable[[int, int], None] | None = None) -> JobResult:
        """Render one job and write its sidecar; failures become an error result. ``on_progress(done, total)``
        follows its frames."""
        job = self._adapt(job)
        host = socket.gethostname()
        try:
            renderer = self._renderer_for(job)
            job.output.parent.mkdir(parents=True, exist_ok=True)
            remove_stale_partials(sidecar_path(job.output))
            result = renderer.render(job.audio, job.output, job.render, on_progress=on_progress)
            write_sidecar(job, result, renderer.package.checksum, result.video_codec)
        except LipsyncError as exc:
            return JobResult.for_job(job, status="error", error=str(exc), host=host)
        except OSError as exc:
            message = f"Could not write {exc.filename or job.output}: {exc.strerror or exc}."
            return JobResult.for_job(job, status="error", error=message, host=host)
        return JobResult.for_job(
            job,
            frames=result.frames,
            duration=result.duration,
            fps=result.fps,
            seconds=result.seconds,
            providers=result.providers,
            host=host,
        )

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
