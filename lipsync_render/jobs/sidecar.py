"""Sidecars: ``X.mp4.json`` beside each finished output records what made it, so a rerun can skip it.

The sidecar holds the input's sha256, the package checksum, the output-affecting options with the session plan's
choices as the render really made them (backend, precision, codec, FFmpeg encoder, size), the whole plan, and the
tool version. It is written (atomically) only after the MP4 is in place, so a killed run leaves no sidecar
claiming a file. Whether an output is up to date is decided against the plan of whoever would render it now
(:func:`is_up_to_date`), never against another machine's guess.
"""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

from lipsync_render import __version__, json_bounded
from lipsync_render.errors import LipsyncError
from lipsync_render.jobs.manifest import Job
from lipsync_render.options import output_affecting
from lipsync_render.package import MANIFEST, resolve_package_path, sha256_file
from lipsync_render.paths import write_file_atomically
from lipsync_render.planning.session_plan import OUTPUT_FIELDS
from lipsync_render.rendering.result import RenderResult


def sidecar_path(output: Path) -> Path:
    """``X.mp4`` -> ``X.mp4.json``."""
    return output.with_name(output.name + ".json")


def job_identity(job: Job, package_checksum: str, plan_identity: dict) -> dict:
    """What a finished output must have been made from for a rerun to keep it: the requested output options with
    the plan's choices as resolved (an NVENC rerun of an x264 file is not the same output, nor bf16 of fp32)."""
    return {
        "input_sha256": sha256_file(job.audio),
        "package_checksum": package_checksum,
        "options": {**output_affecting(job.session, job.render), **plan_identity},
        "version": __version__,
    }


def rendered_identity(result: RenderResult) -> dict:
    """The plan's output identity as the render really made it: the encoder that wrote the file (an NVENC that
    failed to open for it gave way to the software encoder)."""
    identity = {name: result.plan[name] for name in OUTPUT_FIELDS}
    return {**identity, "video_encoder": result.video_encoder}


def write_sidecar(job: Job, result: RenderResult, package_checksum: str) -> None:
    """Record what made ``job.output`` beside it; atomic, and only once the MP4 is in place."""
    record = {
        "tool": "lipsync-render",
        **job_identity(job, package_checksum, rendered_identity(result)),
        "input": str(job.audio),
        "model": job.model,
        "output": str(job.output),
        "output_bytes": job.output.stat().st_size,
        "output_sha256": sha256_file(job.output),
        "video_encoder": result.video_encoder,
        "plan": result.plan,
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


def is_up_to_date(job: Job, plan_identity: dict | None) -> bool:
    """Whether the job's MP4 exists and its sidecar says it was made from the same input, package and options as
    a render with a plan of this ``plan_identity`` (``SessionPlan.output_identity``) would make it; None (the plan
    is not known without measuring) is never up to date."""
    sidecar = sidecar_path(job.output)
    if plan_identity is None or not job.output.is_file() or not sidecar.is_file():
        return False
    try:
        record = json_bounded.read(sidecar)
        if not isinstance(record, dict) or record.get("status") != "ok":
            return False
        if record.get("output_bytes") != job.output.stat().st_size:
            return False
        checksum = sha256_file(resolve_package_path(job.model) / MANIFEST)
        expected = job_identity(job, checksum, plan_identity)
        return all(record.get(key) == value for key, value in expected.items()) and record.get(
            "output_sha256"
        ) == sha256_file(job.output)
    except (OSError, ValueError, LipsyncError):
        return False  # unreadable sidecar, missing input or package: render it and let that report the problem


def recorded_result(job: Job) -> RenderResult:
    """The result of a skipped job, from its sidecar: frames, duration and timings as recorded."""
    record = json_bounded.read(sidecar_path(job.output))
    kept = ("frames", "duration", "fps", "seconds", "providers", "video_encoder", "plan")
    plan = record.get("plan") or {}
    return RenderResult(
        input=str(job.audio),
        output=str(job.output),
        status="skipped",
        backend=plan.get("backend", ""),
        precision=plan.get("precision") or "",
        **{name: record[name] for name in kept if name in record},
    )
