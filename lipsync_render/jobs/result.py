"""What one job reports: the render's own result, wrapped with the job it belongs to and where it ran."""

from __future__ import annotations

from dataclasses import dataclass, field

from lipsync_render.jobs.manifest import Job
from lipsync_render.rendering.result import RenderResult


@dataclass
class JobResult:
    """How one job went: the render's result (status ok, skipped or error) with the job's row, the host and Ray node
    that ran it and how many attempts it took; ``--json`` prints one object per job, the render's fields beside
    the job's."""

    job: str  # where the job came from: "JOBS.csv, line 4"
    model: str  # the package as the manifest names it
    render: RenderResult
    host: str = ""
    node: str = ""  # the Ray node that ran it (first 8 hex digits of its id); empty for a local run
    attempts: int = 1  # 1 + the retries after a lost worker or node
    retried: list[str] = field(default_factory=list)  # why each retry was needed, one sentence each

    @classmethod
    def for_job(cls, job: Job, host: str = "", **values) -> JobResult:
        """A result for ``job``; ``values`` are RenderResult fields (status, error, frames, ...)."""
        render = RenderResult(input=job.audio, output=job.output, **values)
        return cls(job=job.source, model=job.model, render=render, host=host)

    def __getattr__(self, name: str):
        """The render's fields read through the job result: ``result.status``, ``result.frames``, ..."""
        if name.startswith("__") or name == "render":  # not set yet (unpickling, copying): no recursion
            raise AttributeError(name)
        return getattr(self.render, name)

    def to_dict(self) -> dict:
        return {
            "job": self.job,
            "model": self.model,
            **self.render.to_dict(),
            "host": self.host,
            "node": self.node,
            "attempts": self.attempts,
            "retried": self.retried,
        }
