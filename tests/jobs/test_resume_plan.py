"""Resume decided by the session plan of the worker that would render: --precision auto, any thread count."""

import csv
import json
import shutil

import pytest

from lipsync_render.jobs import read_jobs, run_jobs
from lipsync_render.jobs.sidecar import sidecar_path
from lipsync_render.jobs.worker import JobWorker


@pytest.fixture
def own_package(tiny_package, tmp_path):
    """A copy of the tiny package, so its cached --precision auto choices are this test's alone."""
    return shutil.copytree(tiny_package, tmp_path / "pkg")


def write_manifest(path, rows):
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


@pytest.mark.parametrize("threads", [0, 1, 2])
def test_skip_existing_skips_under_precision_auto_whatever_the_threads(threads, own_package, short_wav, tmp_path):
    rows = [
        {"audio": short_wav, "model": own_package, "output": tmp_path / f"out{i}.mp4", "threads": threads}
        for i in range(2)
    ]
    jobs = read_jobs(write_manifest(tmp_path / "jobs.csv", rows))
    first = run_jobs(jobs)
    assert [r.status for r in first] == ["ok", "ok"], [r.error for r in first]
    assert first[0].render.plan["precision_source"].startswith("auto: ")
    again = run_jobs(read_jobs(tmp_path / "jobs.csv"), skip_existing=True)
    assert [r.status for r in again] == ["skipped", "skipped"]
    record = json.loads(sidecar_path(tmp_path / "out0.mp4").read_text())
    assert record["plan"] == first[0].render.plan, "the sidecar records the plan the renderer used"
    assert again[0].render.plan == first[0].render.plan


def test_a_worker_with_its_own_thread_count_decides_resume_with_it(own_package, short_wav, tmp_path):
    """A Ray CPU actor renders with one thread whatever the job says: its own check must match its own render."""
    rows = [{"audio": short_wav, "model": own_package, "output": tmp_path / "out.mp4"}]
    (job,) = read_jobs(write_manifest(tmp_path / "jobs.csv", rows))
    worker = JobWorker(threads=1)
    try:
        assert worker.run(job).status == "ok"
    finally:
        worker.close()
    fresh = JobWorker(threads=1)  # nothing loaded: it plans without measuring, from the cached choice
    try:
        result = fresh.run(job, skip_existing=True)
        assert result.status == "skipped" and fresh.renderer is None
    finally:
        fresh.close()


def test_a_changed_output_option_is_rendered_again(own_package, short_wav, tmp_path):
    rows = [{"audio": short_wav, "model": own_package, "output": tmp_path / "out.mp4", "precision": "fp32"}]
    assert run_jobs(read_jobs(write_manifest(tmp_path / "jobs.csv", rows)))[0].status == "ok"
    rows[0]["crf"] = 30
    again = run_jobs(read_jobs(write_manifest(tmp_path / "jobs.csv", rows)), skip_existing=True)
    assert again[0].status == "ok"
