"""Sidecars: ``X.mp4.json`` beside each finished output records what made it, so a rerun can skip it.

The sidecar holds the input's sha256, the package checksum, the output-affecting options and the tool version,
and is written (atomically) only after the MP4 is in place, so a killed run leaves no sidecar claiming a file.
"""

from __future__ import annotations

import functools
import json
import socket
import time
from pathlib import Path

from lipsync_render import __version__
from lipsync_render.errors import LipsyncError
from lipsync_render.jobs.manifest import Job
from lipsync_render.options import output_affecting
from lipsync_render.package import MANIFEST, resolve_package_path, sha256_file
from lipsync_render.paths import write_file_atomically
from lipsync_render.rendering.result import RenderResult


def sidecar_path(output: Path) -> Path:
    """``X.mp4`` -> ``X.mp4.json``."""
    return output.with_name(output.name + ".json")


def job_identity(job: Job, package_checksum: str, video_codec: str, backend: str, precision: str) -> dict:
    """What a finished output must have been made from for a rerun to keep it: automatic choices as resolved
    (an NVENC rerun of an x264 file is not the same output, nor a bf16 one of an fp32 file)."""
    options = {
        **output_affecting(job.session, job.render),
        "video_encoder": video_codec,
        "backend": backend,
        "precision": precision,
    }
    return {
        "input_sha256": sha256_file(job.audio),
        "package_checksum": package_checksum,
        "options": options,
        "version": __version__,
    }


def write_sidecar(job: Job, result: RenderResult, package_checksum: str, video_codec: str) -> None:
    """Record what made ``job.output`` beside it; atomic, and only once the MP4 is in place."""
    record = {
        "tool": "lipsync-render",
        **job_identity(job, package_checksum, video_codec, result.backend, result.precision),
        "input": str(job.audio),
        "model": job.model,
        "output": str(job.output),
        "output_bytes": job.output.stat().st_size,
        "output_sha256": sha256_file(job.output),
        "video_codec": video_codec,
        "status": result.status,
        "frames": result.frames,
        "duration": result.duration,
        "fps": result.fps,
        "seconds": result.seconds,
        "providers": result.providers,
        "host": socket.gethostname(),
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    write_file_atomically(
        sidecar_path(job.output), lambda temporary: temporary.write_text(json.dumps(record, indent=2) + "\n")
    )


def is_done(job: Job, memo: dict | None = None) -> bool:
    """Whether the job's MP4 exists and its sidecar says it was made from the same input, package and options
    (``memo``: see :func:`resolved_session`)."""
    sidecar = sidecar_path(job.output)
    if not job.output.is_file() or not sidecar.is_file():
        return False
    try:
        record = json.loads(sidecar.read_text())
        if not isinstance(record, dict) or record.get("status") != "ok":
            return False
        if record.get("output_bytes") != job.output.stat().st_size:
            return False
        checksum = sha256_file(resolve_package_path(job.model) / MANIFEST)
        resolved = resolved_session(job, memo)
        if resolved is None:
            return False
        codec = resolved_choices(job.session.codec, job.session.video_encoder, resolved.backend, resolved.device)
        expected = job_identity(job, checksum, *codec, resolved.precision)
        return all(record.get(key) == value for key, value in expected.items()) and record.get(
            "output_sha256"
        ) == sha256_file(job.output)
    except (OSError, ValueError, LipsyncError):
        return False  # unreadable sidecar, missing input or package: render it and let that report the problem


def resolved_session(job: Job, memo: dict | None = None):
    """The job's session options with ``--precision auto`` as it was chosen (from the cache; None if unknown).

    ``memo`` keeps the answers of one run: finding the choice loads the package, which is not free per job."""
    if job.session.precision != "auto":
        return job.session
    key = (job.model, job.session)
    if memo is None or key not in memo:
        resolved = _auto_resolved(job.model, job.session)
        if memo is None:
            return resolved
        memo[key] = resolved
    return memo[key]


def _auto_resolved(model: str, session):
    from dataclasses import replace

    from lipsync_render.package import load_package
    from lipsync_render.runtimes import get_backend
    from lipsync_render.runtimes.precision_choice import cached_choice

    if get_backend(session.backend, session.device).planned_device(session.device) != "cpu":
        return replace(session, precision="fp32")  # as Renderer resolves auto on a GPU
    choice = cached_choice(load_package(model, verify_checksums=False), session)
    return None if choice is None else replace(session, backend=choice.backend, precision=choice.precision)


@functools.cache
def resolved_choices(codec: str, video_encoder: str, backend: str, device: str = "auto") -> tuple[str, str]:
    """The FFmpeg encoder and the backend a render would use here for these (possibly automatic) choices."""
    from lipsync_render.media.video import select_video_encoder
    from lipsync_render.runtimes import get_backend

    return select_video_encoder(codec, video_encoder), get_backend(backend, device).name


def recorded_results(job: Job) -> dict:
    """Frames, duration and timings of a skipped job, from its sidecar."""
    record = json.loads(sidecar_path(job.output).read_text())
    return {
        name: record[name] for name in ("frames", "duration", "fps", "seconds", "providers", "host") if name in record
    }
