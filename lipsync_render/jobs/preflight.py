"""Before a cluster renders anything: proof that every node sees the local paths the jobs name.

Nodes share no disk unless the user says so; a local path in a manifest is the user saying so, and this checks it.
A tiny task runs on every alive node (pinned to it, taking no CPU slot, so busy nodes answer too) and looks for
each local audio file and package, and for a marker file that the driver has just written into each local output
folder: a folder that exists on every node but is not the same folder (outputs stranded on a worker's disk) fails
the check as surely as a missing one. The first problem stops the run with one sentence naming the node. URLs are
not checked here: each worker reads them itself, and their errors are the job's.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from lipsync_render.errors import LipsyncError
from lipsync_render.jobs.manifest import Job
from lipsync_render.package import MANIFEST
from lipsync_render.storage import is_url

ANSWER_SECONDS = 60.0
MARKER = ".lipsync-preflight-"


def check_nodes(ray, jobs: list[Job]) -> None:
    """LipsyncError naming the first node that cannot see a local input or output folder of ``jobs``."""
    audio = sorted({job.audio for job in jobs if not is_url(job.audio)})
    packages = sorted({job.model for job in jobs if not is_url(job.model)})
    folders = sorted({str(Path(job.output).parent) for job in jobs if not is_url(job.output)})
    if not (audio or packages or folders):
        return
    token = secrets.token_hex(8)
    markers = _write_markers(folders, token)
    try:
        nodes = [node for node in ray.nodes() if node.get("Alive")]
        probe = ray.remote(num_cpus=0, max_retries=0)(_problem_here)
        refs = {}
        for node in nodes:
            strategy = _pinned(ray, node["NodeID"])
            refs[probe.options(scheduling_strategy=strategy).remote(audio, packages, folders, token)] = node
        done, late = ray.wait(list(refs), num_returns=len(refs), timeout=ANSWER_SECONDS)
        for ref in late:
            raise LipsyncError(f"{_name(refs[ref])} did not answer the preflight within {ANSWER_SECONDS:g} s.")
        for ref in done:
            try:
                problem = ray.get(ref)
            except Exception as exc:  # the node died while answering
                problem = f"could not run the preflight ({type(exc).__name__})"
            if problem:
                raise LipsyncError(
                    f"{_name(refs[ref])} {problem}; local paths must be on a disk that every node shares (or use "
                    "URLs: s3://, gs://, az://, https://)."
                )
    finally:
        for marker in markers:
            marker.unlink(missing_ok=True)


def _write_markers(folders: list[str], token: str) -> list[Path]:
    """A marker in each output folder (created if need be); LipsyncError when the driver itself cannot."""
    markers = []
    for folder in folders:
        path = Path(folder) / f"{MARKER}{token}"
        try:
            Path(folder).mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"")
        except OSError as exc:
            for marker in markers:
                marker.unlink(missing_ok=True)
            raise LipsyncError(f"The output folder {folder} cannot be written here ({exc.strerror or exc}).") from None
        markers.append(path)
    return markers


def _problem_here(audio: list[str], packages: list[str], folders: list[str], token: str) -> str | None:
    """On one node: the first local path it cannot use, as a clause, or None."""
    for path in audio:
        if not os.access(path, os.R_OK) or not os.path.isfile(path):
            return f"cannot read the audio file {path}"
    for path in packages:
        if not os.access(os.path.join(path, MANIFEST), os.R_OK):
            return f"cannot read the package {path}"
    for folder in folders:
        if not os.path.exists(os.path.join(folder, f"{MARKER}{token}")):
            return f"does not see the output folder {folder} that the driver writes to"
        if not os.access(folder, os.W_OK):
            return f"cannot write to the output folder {folder}"
    return None


def _pinned(ray, node_id: str):
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    return NodeAffinitySchedulingStrategy(node_id=node_id, soft=False)


def _name(node: dict) -> str:
    return f"Node {node['NodeID'][:8]} ({node.get('NodeManagerAddress', '?')})"
