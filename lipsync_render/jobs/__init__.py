"""Many renders from one manifest: resumable batch jobs, locally or fanned out over a Ray cluster.

``manifest`` reads the jobs, ``sidecar`` records what made each output (so a rerun skips what is done),
``worker`` renders jobs on one loaded Renderer, ``runner`` runs them all, ``ray_runner`` on a Ray cluster.
Imported lazily, so `lipsync render` (which takes only ``outputs``) loads none of the rest.
"""

from lipsync_render.lazy_imports import lazy_attributes

__getattr__ = lazy_attributes(
    {
        "Job": "lipsync_render.jobs.manifest",
        "read_jobs": "lipsync_render.jobs.manifest",
        "JobResult": "lipsync_render.jobs.result",
        "run_jobs": "lipsync_render.jobs.runner",
    }
)

__all__ = ["Job", "JobResult", "read_jobs", "run_jobs"]
