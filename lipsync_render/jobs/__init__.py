"""Many renders from one manifest: resumable batch jobs, locally or fanned out over a Ray cluster.

``manifest`` reads the jobs, ``sidecar`` records what made each output (so a rerun skips what is done),
``worker`` renders jobs on one loaded Renderer, ``runner`` runs them all, ``ray_runner`` on a Ray cluster.
"""

from lipsync_render.jobs.manifest import Job, read_jobs
from lipsync_render.jobs.result import JobResult
from lipsync_render.jobs.runner import run_jobs

__all__ = ["Job", "JobResult", "read_jobs", "run_jobs"]
