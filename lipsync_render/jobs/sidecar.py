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
from lipsync_render.package import sha256_file
from lipsync_render.planning.session_plan import OUTPUT_FIELDS
from lipsync_render.rendering.result import RenderResult
from lipsync_render.storage import is_url, parse_location, read_text, remove, write_text_atomically
from lipsync_render.storage.remote import remote_size

MAX_SIDECAR_BYTES = 1 << 20


def sidecar_path(output: Path) -> Path:
    """``X.mp4`` -> ``X.mp4.json`` for a local output."""
    return output.with_name(output.name + ".json")


def job_identity(job: Job, package_checksum: str, plan_identity: dict, audio: Path) -> dict:
    """What a finished output must have been made from for a rerun to keep it: the audio's content (``audio``: its
    local copy), the package, the requested output options with the plan's choices as resolved (an NVENC rerun of
    an x264 file is not the same output, nor bf16 of fp32) and the tool's version."""
    return {
        "input_sha256": sha256_file(audio),
        "package_checksum": package_checksum,
        "options": {**output_affecting(job.session, job.render), **plan_identity},
        "version": __version__,
    }


def rendered_identity(result: RenderResult) -> dict:
    """The plan's output identity as the render really made it: the encoder that wrote the file (an NVENC that
    failed to open for it gave way to the software encoder)."""
    identity = {name: result.plan[name] for name in OUTPUT_FIELDS}
    return {**identity, "video_encoder": result.video_encoder}


def sidecar_record(job: Job, result: RenderResult, package_checksum: str, audio: Path, rendered: Path) -> dict:
    """What made ``job.output``: measured on the local files (the audio as read, the MP4 as rendered), before the
    output is published."""
    return {
        "tool": "lipsync-render",
        **job_identity(job, package_checksum, rendered_identity(result), audio),
        "input": job.audio,
        "model": job.model,
        "output": job.output,
        "output_bytes": rendered.stat().st_size,
        "output_sha256": sha256_file(rendered),
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


def sidecar_location(output: str) -> str:
    """``X.mp4`` -> ``X.mp4.json``, for a local path or a URL."""
    return output + ".json"


def write_sidecar(output: str, record: dict) -> None:
    """Record what made ``output`` beside it (atomic: a rename, or one PUT); only once the MP4 is in place."""
    write_text_atomically(sidecar_location(output), json.dumps(record, indent=2) + "\n")


def remove_sidecar(output: str) -> None:
    """Before an output is replaced: a new MP4 must never stand beside the old one's sidecar."""
    remove(sidecar_location(output))


def read_sidecar(output: str) -> dict | None:
    """The sidecar beside ``output`` where it lives, or None when there is none or it is unreadable."""
    try:
        record = json_bounded.loads(read_text(sidecar_location(output), MAX_SIDECAR_BYTES), sidecar_location(output))
    except (LipsyncError, OSError, ValueError, RecursionError):
        return None
    return record if isinstance(record, dict) else None


def is_up_to_date(job: Job, audio: Path, package_checksum: str, plan_identity: dict | None) -> dict | None:
    """The sidecar record when the job's output exists and was made from the same input, package and options as a
    render with a plan of this ``plan_identity`` (``SessionPlan.output_identity``) would make it; else None (a
    plan not known without measuring is never up to date). A local output is hashed again; a remote object,
    uploaded whole and only then described by its sidecar, is checked by its size."""
    if plan_identity is None:
        return None
    record = read_sidecar(job.output)
    if record is None or record.get("status") != "ok":
        return None
    try:
        if output_size(job.output) != record.get("output_bytes"):
            return None
        expected = job_identity(job, package_checksum, plan_identity, audio)
        if any(record.get(key) != value for key, value in expected.items()):
            return None
        if not is_url(job.output) and record.get("output_sha256") != sha256_file(Path(job.output)):
            return None
    except (OSError, ValueError, LipsyncError):
        return None  # unreadable output or input: render it and let that report the problem
    return record


def output_size(output: str) -> int | None:
    """Bytes of the output file or object now, None when it is not there."""
    loc = parse_location(output, for_writing=True, what="Output")
    if not loc.remote:
        return loc.path.stat().st_size if loc.path.is_file() else None
    return remote_size(loc, LipsyncError)


def recorded_result(job: Job, record: dict) -> RenderResult:
    """The result of a skipped job, from its sidecar: frames, duration and timings as recorded."""
    kept = ("frames", "duration", "fps", "seconds", "providers", "video_encoder", "plan")
    plan = record.get("plan") if isinstance(record.get("plan"), dict) else {}
    return RenderResult(
        input=job.audio,
        output=job.output,
        status="skipped",
        backend=str(plan.get("backend", "")),
        precision=str(plan.get("precision") or ""),
        **{name: record[name] for name in kept if name in record},
    )
