"""What one job reads and writes, as files on the worker that renders it.

A job's audio, package and output are locations: local paths or URLs. On the worker, the audio becomes a local
file (a URL is downloaded into a folder of its own, removed afterwards), the package a local folder (a URL comes
from this node's package cache, fetched and verified once per node, kept from eviction while leased), and the
output is rendered to a local file first: a local output in place (the Renderer writes it under a partial name and
renames it whole), a remote one in a staging folder, checked, then uploaded whole (``storage.upload``).
Nothing here assumes that the driver and the workers share a disk.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from lipsync_render.errors import AudioError, LipsyncError, PackageError
from lipsync_render.jobs.manifest import Job
from lipsync_render.package import MANIFEST, resolve_package_path
from lipsync_render.storage import fetch_package, fetch_to_local, is_url, read_bytes
from lipsync_render.storage.package_cache import PackageLease
from lipsync_render.storage.remote import MAX_TEXT_BYTES

__all__ = ["lease_package", "local_audio", "package_checksum"]


@contextmanager
def local_audio(job: Job) -> Iterator[Path]:
    """The job's audio as a local file for the length of the block (a downloaded copy is removed after)."""
    if not is_url(job.audio):
        yield Path(job.audio)
        return
    folder = Path(tempfile.mkdtemp(prefix="lipsync-input-"))
    try:
        yield fetch_to_local(job.audio, folder, error=AudioError)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def lease_package(model: str) -> PackageLease:
    """The job's package as a local folder on this node: a URL from the node's cache (fetched and verified when
    absent), a path or a name as the loader resolves it. Close the lease when the package is no longer used."""
    if is_url(model):
        return fetch_package(model)
    return PackageLease(resolve_package_path(model))


def package_checksum(model: str, lease: PackageLease) -> str:
    """The sha256 of the package's manifest (which lists every file's checksum): what a sidecar records."""
    if lease.checksum is not None:
        return lease.checksum
    manifest = lease.path / MANIFEST
    try:
        return hashlib.sha256(read_bytes(manifest, MAX_TEXT_BYTES, PackageError)).hexdigest()
    except LipsyncError:
        raise
    except OSError as exc:
        raise PackageError(f"Cannot read {manifest} ({exc.strerror or exc}).") from None
