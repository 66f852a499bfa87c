"""Driving ``lipsync render-many`` against the cluster of cluster_fixtures.py: inputs in a bucket, a manifest of
URLs, the driver as a subprocess whose ``--json`` lines are read as they come, a node killed mid-run, and the
checks of what a run leaves behind. Shared by tests/jobs/test_cluster.py and benchmarks/cluster.py.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import soundfile as sf

from lipsync_render.storage.upload import STAGING_PREFIX
from tests.jobs.cluster_fixtures import non_loopback_sockets

EXAMPLES_DIR = Path(__file__).resolve().parents[2] / "examples"
FRAME_S = 1 / 25


def cut_clips(folder: Path, seconds: list[float]) -> list[Path]:
    """WAVs cut from the example speech at different offsets, one per length in ``seconds``."""
    samples, rate = sf.read(EXAMPLES_DIR / "hello.wav", dtype="int16")
    folder.mkdir(parents=True, exist_ok=True)
    room = len(samples) / rate
    paths = []
    for i, length in enumerate(seconds):
        start = (i * 0.37) % max(room - length, 0.01)
        paths.append(folder / f"clip{i:02}.wav")
        sf.write(paths[-1], samples[int(start * rate) : int((start + length) * rate)], rate)
    return paths


def expected_frames(audio: Path) -> int:
    info = sf.info(audio)
    return math.ceil(info.frames / info.samplerate * 25)


def s3():
    """An s3fs filesystem speaking to the server that AWS_ENDPOINT_URL names (moto's, in the tests)."""
    import s3fs

    return s3fs.S3FileSystem(skip_instance_cache=True)


def upload(local: Path, url: str) -> str:
    """Copy a file or a folder (recursively) to ``url``; the URL."""
    fs = s3()
    target = url.removeprefix("s3://")
    if local.is_dir():
        for file in sorted(p for p in local.rglob("*") if p.is_file()):
            fs.put_file(str(file), f"{target}/{file.relative_to(local).as_posix()}")
    else:
        fs.put_file(str(local), target)
    return url


def bucket_keys(bucket: str) -> set[str]:
    import boto3

    pages = boto3.client("s3").get_paginator("list_objects_v2").paginate(Bucket=bucket)
    return {item["Key"] for page in pages for item in page.get("Contents", [])}


def open_multipart_uploads(bucket: str) -> list[str]:
    import boto3

    return [u["Key"] for u in boto3.client("s3").list_multipart_uploads(Bucket=bucket).get("Uploads", [])]


def write_manifest(path: Path, rows: list[dict]) -> Path:
    columns = ("audio", "model", "output")
    lines = [",".join(columns)] + [",".join(str(row[c]) for c in columns) for row in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


class DriverRun:
    """``lipsync render-many MANIFEST ARGS...`` as a subprocess, stdout and stderr read by threads as they come."""

    def __init__(self, manifest: Path, args: list[str], env: dict[str, str], cwd: Path | None = None):
        self.started = time.monotonic()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "lipsync_render", "render-many", str(manifest), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=cwd or manifest.parent,
            start_new_session=True,
        )
        self.stdout: list[str] = []
        self.stderr: list[str] = []
        self._readers = [
            threading.Thread(target=self._read, args=(self.process.stdout, self.stdout), daemon=True),
            threading.Thread(target=self._read, args=(self.process.stderr, self.stderr), daemon=True),
        ]
        for reader in self._readers:
            reader.start()
        self.wall_s: float | None = None

    @staticmethod
    def _read(stream, into: list[str]) -> None:
        for line in stream:
            into.append(line.rstrip("\n"))

    def results(self, strict: bool = True) -> list[dict]:
        """The stdout lines read so far, each parsed as JSON (a line that is not one raises; without ``strict``
        only lines starting with '{' are read)."""
        lines = [line for line in list(self.stdout) if line.strip() and (strict or line.startswith("{"))]
        return [json.loads(line) for line in lines]

    def running(self) -> bool:
        return self.process.poll() is None

    def wait(self, timeout: float) -> int:
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, 9)
            self.process.wait(30)
            raise AssertionError(f"render-many ran past {timeout:.0f} s: {self.text()[-3000:]}") from None
        self.wall_s = time.monotonic() - self.started
        for reader in self._readers:
            reader.join(10)
        return code

    def text(self) -> str:
        return "\n".join(self.stdout) + "\n--- stderr ---\n" + "\n".join(self.stderr)


def rendering_pids(*folders: Path) -> set[int]:
    """The process ids that have an output in progress in ``folders``: a staging folder (``lipsync-staging-PID-X``,
    a remote output) or a partial file beside a local output (``.STEM.PID.partial.mp4``)."""
    pids = set()
    for folder in folders:
        try:
            names = os.listdir(folder)
        except OSError:
            continue
        for name in names:
            if name.startswith(STAGING_PREFIX):
                pid = name[len(STAGING_PREFIX) :].split("-", 1)[0]
            elif ".partial" in name:
                pid = name.split(".partial", 1)[0].rsplit(".", 1)[-1]
            else:
                continue
            if pid.isdigit():
                pids.add(int(pid))
    return pids


def watch(run: DriverRun, cluster, timeout: float, kill_when=None, sockets_of=()) -> dict:
    """Follow a run to its end: sample every socket of the cluster, the driver and ``sockets_of`` for
    non-loopback ends, and kill the second node once ``kill_when(run, cluster)`` is true (checked every 20 ms).
    What happened: {"killed_at_s", "finished_at_kill", "off_loopback"}."""
    seen = {"killed_at_s": None, "finished_at_kill": None, "off_loopback": set()}
    deadline = time.monotonic() + timeout
    next_socket_sample = 0.0
    while run.running() and time.monotonic() < deadline:
        if kill_when is not None and seen["killed_at_s"] is None and kill_when(run, cluster):
            seen["finished_at_kill"] = len(run.stdout)
            cluster.kill("two")
            seen["killed_at_s"] = time.monotonic() - run.started
        if time.monotonic() >= next_socket_sample:
            import psutil

            try:
                driver = [psutil.Process(run.process.pid), *psutil.Process(run.process.pid).children(recursive=True)]
            except psutil.NoSuchProcess:
                driver = []
            seen["off_loopback"] |= set(non_loopback_sockets([*cluster.processes(), *driver, *sockets_of]))
            next_socket_sample = time.monotonic() + 0.5
        time.sleep(0.02)
    return seen


def node_two_is_rendering(*folders: Path, after_results: int = 0):
    """A kill_when: at least ``after_results`` results are in and a process of the second node has an output in
    progress in one of ``folders`` (staging or output folders)."""

    def ready(run: DriverRun, cluster) -> bool:
        if len(run.results(strict=False)) < after_results:
            return False
        return any(belongs_to(pid, cluster.folders["two"]) for pid in rendering_pids(*folders))

    return ready


def belongs_to(pid: int, folder: Path) -> bool:
    """Whether process ``pid`` or one of its ancestors names ``folder`` on its command line (a node's process)."""
    import psutil

    try:
        proc = psutil.Process(pid)
        for each in [proc, *proc.parents()]:
            if any(str(folder) in part for part in each.cmdline()):
                return True
    except psutil.Error:
        pass
    return False


def leftovers(folder: Path) -> list[str]:
    """Partial outputs, staging folders and unfinished package downloads anywhere under ``folder``."""
    marks = (".partial", STAGING_PREFIX, ".install-")
    return sorted(str(p) for p in folder.rglob("*") if any(mark in p.name for mark in marks))
