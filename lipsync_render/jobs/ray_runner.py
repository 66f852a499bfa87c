"""Jobs on a Ray cluster: one actor per GPU (or CPU slot) holding a Renderer, results streamed back as they finish.

Ray is an optional extra (``lipsync-render[ray]``), imported only when ``--ray`` is used.
"""

from __future__ import annotations

from dataclasses import replace

from lipsync_render.errors import LipsyncError
from lipsync_render.jobs.manifest import Job
from lipsync_render.jobs.worker import JobResult, JobWorker, grouped
from lipsync_render.package.loader import resolve_package_path


def import_ray():
    """The ray module, or a one-sentence error saying how to get it."""
    try:
        import ray
    except ImportError:
        raise LipsyncError("Ray mode needs Ray: pip install 'lipsync-render[ray]'.") from None
    return ray


def run_on_ray(
    jobs: list[Job], pending: list[int], fail_fast: bool, report, address: str, skip_existing: bool = False
) -> None:
    """One actor per GPU (else per CPU slot), each fed the next job as it finishes, preferring its loaded package."""
    if not pending:
        return
    ray = import_ray()
    started_here = not ray.is_initialized()
    names = {index: jobs[index].model for index in pending}

    def report_named(index: int, result: JobResult) -> None:
        report(index, replace(result, model=names[index]))

    if started_here:
        try:
            # 'auto': the cluster this machine belongs to, else a new local instance (Ray's default); 'local':
            # always a new local instance; anything else: a cluster address (host:port or ray://host:10001).
            ray.init(address=None if address == "auto" else address, log_to_driver=False)
        except Exception as exc:  # Ray raises ConnectionError, ValueError, RuntimeError... for a bad address
            raise LipsyncError(f"Could not start or reach Ray at '{address}' ({str(exc).splitlines()[0]}).") from None
    try:
        runnable = _with_packages_resolved(jobs, pending, fail_fast, report_named)
        _dispatch(ray, jobs, runnable, fail_fast, report_named, skip_existing)
    finally:
        if started_here:
            ray.shutdown()


def _with_packages_resolved(jobs: list[Job], pending: list[int], fail_fast: bool, report) -> list[int]:
    """Turn model names into absolute paths here, so actors do not depend on their working directory.

    ``jobs`` is the caller's copy: its entries are replaced; results keep the model as the manifest names it.
    """
    runnable = []
    for index in pending:
        try:
            resolved = str(resolve_package_path(jobs[index].model).resolve())
        except LipsyncError as exc:
            report(index, JobResult.for_job(jobs[index], status="error", error=str(exc)))
            if fail_fast:
                return []
            continue
        jobs[index] = replace(jobs[index], model=resolved)
        runnable.append(index)
    return runnable


def _dispatch(ray, jobs: list[Job], pending: list[int], fail_fast: bool, report, skip_existing: bool) -> None:
    if not pending:
        return
    resources = ray.cluster_resources()
    gpus, cpus = int(resources.get("GPU", 0)), int(resources.get("CPU", 1))
    slots = max(1, min(gpus or cpus, len(pending)))
    actor_class = ray.remote(num_gpus=1)(JobWorker) if gpus else ray.remote(num_cpus=1)(JobWorker)
    # A CPU actor owns one CPU slot, so it runs ONNX Runtime on one thread unless the job says otherwise.
    actors = [actor_class.remote(single_gpu=bool(gpus), threads=0 if gpus else 1) for _ in range(slots)]
    queue = grouped(jobs, pending)
    loaded: dict[int, tuple] = {}
    running: dict = {}  # ObjectRef -> (actor number, job index)

    def hand_out(actor: int) -> None:
        same = next((i for i in queue if jobs[i].renderer_key == loaded.get(actor)), queue[0])
        queue.remove(same)
        loaded[actor] = jobs[same].renderer_key
        running[actors[actor].run.remote(jobs[same], None, skip_existing)] = (actor, same)

    try:
        for actor in range(slots):
            if queue:
                hand_out(actor)
        stop = False
        while running:
            done, _ = ray.wait(list(running), num_returns=1)
            actor, index = running.pop(done[0])
            result = _ray_result(ray, done[0], jobs[index])
            report(index, result)
            stop = stop or (fail_fast and result.status == "error")
            if queue and not stop:
                hand_out(actor)
    finally:
        _stop_actors(ray, actors)


def _stop_actors(ray, actors: list) -> None:
    """Close each actor's Renderer (its compositing pool and shared memory), then end the actor."""
    try:
        ray.get([actor.close.remote() for actor in actors], timeout=60)
    except Exception:  # a dead or stuck actor: killing it below is all that is left to do
        pass
    for actor in actors:
        ray.kill(actor)


def _ray_result(ray, ref, job: Job) -> JobResult:
    """A finished actor call's result; a dead actor or Ray failure becomes an error result."""
    try:
        return ray.get(ref)
    except Exception as exc:  # RayActorError, RayTaskError, ...: the actor died or the call failed
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return JobResult.for_job(job, status="error", error=f"The Ray worker failed ({first[:200]}).")
