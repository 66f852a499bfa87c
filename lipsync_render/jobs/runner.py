"""``run_jobs``: every job of a manifest, here or on a Ray cluster, skipping the ones already done."""

from __future__ import annotations

from collections.abc import Callable

from lipsync_render.jobs.manifest import Job
from lipsync_render.jobs.ray_runner import ClusterSettings, run_on_ray
from lipsync_render.jobs.result import JobResult
from lipsync_render.jobs.worker import JobWorker, grouped


def run_jobs(
    jobs: list[Job],
    skip_existing: bool = False,
    fail_fast: bool = False,
    on_result: Callable[[JobResult], None] | None = None,
    ray_address: str | ClusterSettings | None = None,
    on_frames: Callable[[Job, int, int], None] | None = None,
) -> list[JobResult]:
    """Run jobs here (or on Ray when ``ray_address`` is given: an address or :class:`ClusterSettings`); results
    come back in job order.

    Jobs are grouped so that each package and session setup loads once. With ``skip_existing`` the worker that
    would render a job decides whether its output is already up to date for the plan it would use. ``on_result``
    sees each result as it finishes; ``on_frames(job, done, total)`` follows the frames of the job rendering here
    (not on Ray). With ``fail_fast`` no job is started after the first failure; jobs not started have no result.
    """
    results: dict[int, JobResult] = {}

    def report(index: int, result: JobResult) -> None:
        results[index] = result
        if on_result is not None:
            on_result(result)

    pending = list(range(len(jobs)))
    if ray_address is not None:
        cluster = ray_address if isinstance(ray_address, ClusterSettings) else ClusterSettings(ray_address)
        try:
            run_on_ray(list(jobs), pending, fail_fast, report, cluster, skip_existing)
        finally:
            _sweep_here()
    else:
        _run_here(jobs, pending, fail_fast, report, on_frames, skip_existing)
    return [results[i] for i in sorted(results)]


def _run_here(jobs: list[Job], pending: list[int], fail_fast: bool, report, on_frames, skip_existing: bool) -> None:
    worker = JobWorker()
    try:
        for index in grouped(jobs, pending):
            job = jobs[index]
            follow = None if on_frames is None else (lambda done, total, job=job: on_frames(job, done, total))
            result = worker.run(job, follow, skip_existing)
            report(index, result)
            if result.status == "error" and fail_fast:
                break
    finally:
        worker.close()


def _sweep_here() -> None:
    """After a cluster run: the shared rings and multiprocessing semaphores of workers that died on this machine (a
    lost node's renders; other machines' are swept by the next run's first task there)."""
    from lipsync_render.rendering.shared_ring import sweep_leftovers

    sweep_leftovers()
