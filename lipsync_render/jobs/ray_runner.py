"""Jobs on a Ray cluster: one Ray task per job, pulled by whichever node has a free slot, resubmitted when its
worker or node dies.

Why tasks and not a pool of actors: Ray's scheduler already places each task on a node with a free CPU (or GPU)
slot as slots free up, so busy nodes, nodes that die and nodes that join mid-run are its business, not a count
taken at the start; a dead node's tasks fail with a system error instead of being handed more jobs. The Renderer
is still loaded once per worker process, not per job: Ray reuses a worker process for the next task, which finds
its loaded Renderer in ``_WORKER``. Ray's own ``max_retries`` would re-run a task whose worker died, but tells
the caller neither that it happened nor why, so the driver resubmits such a job itself (at most ``retries``
times, each reason reported) and never one that failed for its own reasons: those come back as error results,
not exceptions. A job not finished within ``job_timeout`` seconds of its submission (waiting for a slot
included) is cancelled and reported.

Ray is an optional extra (``lipsync-render[ray]``), imported only when ``--ray`` is used.
"""

from __future__ import annotations

import atexit
import logging
import os
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, replace

from lipsync_render.errors import LipsyncError
from lipsync_render.jobs.manifest import Job
from lipsync_render.jobs.preflight import check_nodes
from lipsync_render.jobs.result import JobResult
from lipsync_render.jobs.worker import JobWorker, grouped
from lipsync_render.package.locate import names_a_path, resolve_package_path
from lipsync_render.rendering.shared_ring import sweep_leftovers
from lipsync_render.storage import is_url

POLL_SECONDS = 0.25
CANCEL_GRACE_SECONDS = 1.5  # a cancelled render stops within a second (its stages poll every 0.1 s)
_WORKER: JobWorker | None = None  # the JobWorker of this Ray worker process, kept between tasks


def import_ray():
    """The ray module, or a one-sentence error saying how to get it."""
    try:
        import ray
    except ImportError:
        raise LipsyncError("Ray mode needs Ray: pip install 'lipsync-render[ray]'.") from None
    return ray


@dataclass(frozen=True)
class ClusterSettings:
    """How jobs run on Ray: the cluster's address ('auto', 'local' or host:port), how often a job whose worker or
    node died is resubmitted, how long a job may take from submission (seconds), and whether Ray stays silent."""

    address: str
    retries: int = 3
    job_timeout: float = 3600.0
    quiet: bool = False


def run_on_ray(
    jobs: list[Job], pending: list[int], fail_fast: bool, report, cluster: ClusterSettings, skip_existing: bool = False
) -> None:
    """Run ``pending`` jobs as Ray tasks; ``report(index, JobResult)`` as each finishes. Ctrl-C cancels every task
    in flight (their renders remove their partial files) and reports what finished before it."""
    if not pending:
        return
    ray = import_ray()
    with ray_output_apart(cluster.quiet):
        started_here = not ray.is_initialized()
        if started_here:
            _connect(ray, cluster.address, cluster.quiet)
        names = {index: jobs[index].model for index in pending}

        def report_named(index: int, result: JobResult) -> None:
            result.model = names[index]  # as the manifest names it, not as resolved for the workers
            report(index, result)

        try:
            runnable = _with_packages_resolved(jobs, pending, fail_fast, report_named)
            check_nodes(ray, [jobs[i] for i in runnable])
            dispatcher = _Dispatcher(ray, jobs, report_named, skip_existing, cluster.retries, cluster.job_timeout)
            dispatcher.run(grouped(jobs, runnable), fail_fast)
        finally:
            if started_here:
                ray.shutdown()


@contextmanager
def ray_output_apart(quiet: bool):
    """Ray's own messages away from our standard output, which carries only our results (``--json``): while Ray
    runs, ``sys.stdout`` is standard error (Ray prints cluster events such as a node marked dead with ``print``);
    with ``quiet`` both go nowhere, Ray's native logging on file descriptor 2 included. Callers that print
    results keep the stream they held before."""
    saved_stdout, saved_fd = sys.stdout, None
    sink = open(os.devnull, "w") if quiet else None  # noqa: SIM115 (closed below)
    try:
        sys.stdout = sink or sys.stderr
        if quiet:
            sys.stderr.flush()
            saved_fd = os.dup(2)
            os.dup2(sink.fileno(), 2)
        yield
    finally:
        sys.stdout = saved_stdout
        if saved_fd is not None:
            os.dup2(saved_fd, 2)
            os.close(saved_fd)
        if sink is not None:
            sink.close()


def _connect(ray, address: str, quiet: bool) -> None:
    """Join the cluster (or start a local instance) with Ray's own output kept out of ours: worker logs are not
    streamed to this process, and Ray's logger speaks only of errors (nothing at all with ``quiet``)."""
    level = logging.CRITICAL if quiet else logging.ERROR
    try:
        # 'auto': the cluster this machine belongs to, else a new local instance (Ray's default); 'local':
        # always a new local instance; anything else: a cluster address (host:port or ray://host:10001).
        ray.init(
            address=None if address == "auto" else address,
            log_to_driver=False,
            logging_level=level,
            include_dashboard=False,
            configure_logging=True,
        )
    except Exception as exc:  # Ray raises ConnectionError, ValueError, RuntimeError... for a bad address
        raise LipsyncError(f"Could not start or reach Ray at '{address}' ({str(exc).splitlines()[0]}).") from None
    logging.getLogger("ray").setLevel(level)


def _with_packages_resolved(jobs: list[Job], pending: list[int], fail_fast: bool, report) -> list[int]:
    """Package names become absolute paths here, so workers do not depend on their working directory (the
    preflight then proves every node sees them). URLs stay URLs. Results keep the model as the manifest names it."""
    runnable = []
    for index in pending:
        model = jobs[index].model
        if is_url(model) or (names_a_path(model) and os.path.isabs(model)):
            runnable.append(index)
            continue
        try:
            resolved = str(resolve_package_path(model).resolve())
        except LipsyncError as exc:
            report(index, JobResult.for_job(jobs[index], status="error", error=str(exc)))
            if fail_fast:
                return []
            continue
        jobs[index] = replace(jobs[index], model=resolved)
        runnable.append(index)
    return runnable


def _run_job(job: Job, skip_existing: bool) -> JobResult:
    """One job in a Ray worker process (the task's body): the process's JobWorker keeps its Renderer for the next
    task; inference gets the node's cores per CPU slot."""
    import ray

    global _WORKER
    context = ray.get_runtime_context()
    gpus = context.get_accelerator_ids().get("GPU", [])
    if _WORKER is None:
        sweep_leftovers()  # what workers of earlier runs on this node left when they were killed
        _WORKER = JobWorker(single_gpu=bool(gpus), threads=0 if gpus else _threads_per_slot(ray, context))
        atexit.register(_WORKER.close)  # Ray ends idle workers at the end of a run: free the ring and helpers
    result = _WORKER.run(job, skip_existing=skip_existing)
    result.node = context.get_node_id()[:8]
    return result


def _threads_per_slot(ray, context) -> int:
    """This node's cores over its CPU slots: a node that offers 1 slot on 2 cores renders with 2 threads, a node
    that offers a slot per core with 1."""
    node = context.get_node_id()
    slots = next((n["Resources"].get("CPU", 1) for n in ray.nodes() if n["NodeID"] == node), 1)
    return max(1, int((os.cpu_count() or 1) // max(1, slots)))


class _Dispatcher:
    """Submits jobs as tasks, waits for them, resubmits the ones whose worker or node died, cancels late ones."""

    def __init__(self, ray, jobs: list[Job], report, skip_existing: bool, retries: int, job_timeout: float):
        self.ray, self.jobs, self.report = ray, jobs, report
        self.skip_existing, self.retries, self.job_timeout = skip_existing, retries, job_timeout
        gpus = int(ray.cluster_resources().get("GPU", 0))
        self.task = ray.remote(_run_job).options(max_retries=0, **({"num_gpus": 1} if gpus else {"num_cpus": 1}))
        self.running: dict = {}  # ObjectRef -> (job index, submitted at)
        self.failures: dict[int, list[str]] = {}

    def submit(self, index: int) -> None:
        ref = self.task.remote(self.jobs[index], self.skip_existing)
        self.running[ref] = (index, time.monotonic())

    def run(self, queue: list[int], fail_fast: bool) -> None:
        for index in queue:
            self.submit(index)
        stop = False
        try:
            while self.running and not stop:
                done, _ = self.ray.wait(list(self.running), num_returns=1, timeout=POLL_SECONDS)
                for ref in done:
                    result = self._finished(ref)
                    stop = stop or (fail_fast and result is not None and result.status == "error")
                self._cancel_late()
        except KeyboardInterrupt:
            self._cancel_all()
            raise
        if stop:
            self._cancel_all(report=False)

    def _finished(self, ref) -> JobResult | None:
        """Report a finished task; resubmit its job if a worker or node died under it (None then)."""
        index, _ = self.running.pop(ref)
        job = self.jobs[index]
        try:
            result = self.ray.get(ref)
        except Exception as exc:  # the worker or node died, or Ray failed the task
            reason = _reason(exc)
            if _is_lost_worker(self.ray, exc) and len(self.failures.get(index, [])) < self.retries:
                self.failures.setdefault(index, []).append(reason)
                self.submit(index)
                return None
            result = JobResult.for_job(job, status="error", error=f"The Ray worker failed ({reason}).")
        result.retried = self.failures.get(index, [])
        result.attempts = 1 + len(result.retried)
        self.report(index, result)
        return result

    def _cancel_late(self) -> None:
        if not self.job_timeout:
            return
        now = time.monotonic()
        for ref, (index, submitted) in list(self.running.items()):
            if now - submitted > self.job_timeout:
                self.running.pop(ref)
                self.ray.cancel(ref, force=True)
                late = f"did not finish within {self.job_timeout:g} s (--job-timeout); it was cancelled."
                self.report(index, JobResult.for_job(self.jobs[index], status="error", error=f"The job {late}"))

    def _cancel_all(self, report: bool = True) -> None:
        """Cancel every task in flight: an interrupt first (the render stops and removes its partial file within a
        second), then, for any still running after a grace period, its worker process ends."""
        refs = list(self.running)
        for ref in refs:
            self.ray.cancel(ref, force=False)
        deadline = time.monotonic() + CANCEL_GRACE_SECONDS
        while self.running and time.monotonic() < deadline:
            done, _ = self.ray.wait(list(self.running), num_returns=len(self.running), timeout=POLL_SECONDS)
            for ref in done:
                index, _ = self.running.pop(ref)
                try:
                    result = self.ray.get(ref)
                except Exception:  # cancelled: nothing finished to report
                    continue
                if report and result.status != "error":
                    self.report(index, result)
        for ref in list(self.running):
            self.ray.cancel(ref, force=True)
        self.running.clear()


def _is_lost_worker(ray, exc: Exception) -> bool:
    """A failure of the machinery, not of the job: the worker process or its node died, or the result was lost
    with its node. Our task never raises for a job's own problems (they are error results)."""
    lost = tuple(
        getattr(ray.exceptions, name)
        for name in (
            "WorkerCrashedError",
            "NodeDiedError",
            "ObjectLostError",
            "OwnerDiedError",
            "RayActorError",
            "LocalRayletDiedError",
            "OutOfMemoryError",
            "ActorUnavailableError",
        )
        if hasattr(ray.exceptions, name)
    )
    return isinstance(exc, lost)


def _reason(exc: Exception) -> str:
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return f"{type(exc).__name__}: {first[:160]}"
