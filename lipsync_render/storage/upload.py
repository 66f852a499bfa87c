"""Publishing a finished output so that a reader never sees a partial file or object.

An output is rendered to a local file (beside a local destination, or in a per-process staging folder for a
remote one), checked by the caller, then published:

- local or file:// destination: renamed onto the final name in the same folder (``os.replace``), refused where
  the final name is anything but a regular file (:func:`lipsync_render.paths.write_file_atomically`);
- object store: one upload straight to the final key. S3 shows an object whole or not at all, both for a single
  PUT (below 2 x ``UPLOAD_CHUNK_BYTES``) and for a multipart upload, whose object appears only on
  CompleteMultipartUpload (s3fs aborts the upload on any error, so no part is left billed); GCS (an object is
  visible once finalised) and Azure (a block blob once its block list is committed) are the same. A temporary
  key plus copy would double the bytes moved and, S3 having no rename, leave a visible second object when the copy
  or delete fails, so it is not used. After the upload the object's size is compared with the local file's; on
  any failure (cancelled, network, size) an object that this upload created is deleted, so nothing new is left
  under the final key. The local file is always removed.

Staging folders are ``lipsync-staging-PID-XXXX`` under ``$LIPSYNC_STAGING`` (default: the system temporary folder);
the folders of processes that are gone (SIGKILL) are swept when the next staged output starts, as partial files
are beside local outputs.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from lipsync_render.errors import RenderError
from lipsync_render.paths import write_file_atomically
from lipsync_render.storage.remote import failure, filesystem, location
from lipsync_render.storage.urls import Location, redact

STAGING_ENV = "LIPSYNC_STAGING"
STAGING_PREFIX = "lipsync-staging-"
# S3 parts are 5 MiB at least; 8 MiB parts keep a single PUT's buffer at most 16 MiB.
UPLOAD_CHUNK_BYTES = 8 << 20
_STAGING = re.compile(rf"^{STAGING_PREFIX}(\d+)-")


class UploadCancelled(RenderError):
    """An upload stopped because the run was cancelled (nothing is left under the final name)."""


def staging_root() -> Path:
    return Path(os.environ.get(STAGING_ENV) or tempfile.gettempdir())


def sweep_staging(root: Path | None = None) -> list[Path]:
    """Remove the staging folders of processes that are gone; the folders removed."""
    import psutil

    root = root or staging_root()
    removed = []
    with suppress(OSError):
        for entry in root.iterdir():
            match = _STAGING.match(entry.name)
            if match and not psutil.pid_exists(int(match[1])) and entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
                removed.append(entry)
    return removed


@contextmanager
def staged_output(where: str | Path | Location, cancelled: Callable[[], bool] | None = None) -> Iterator[Path]:
    """A local path to render into; published to ``where`` when the block ends without an exception.

    A local destination gets ``.STEM.PID.partial.SUFFIX`` beside it (the name rendering/partials.py sweeps); a
    remote one a file of the same name in a fresh staging folder, removed with everything in it at the end.
    """
    loc = location(where, for_writing=True, what="Output")
    if not loc.remote:
        partial = loc.path.with_name(f".{loc.path.stem}.{os.getpid()}.partial{loc.path.suffix}")
        try:
            yield partial
            publish(partial, loc, cancelled)
        finally:
            partial.unlink(missing_ok=True)
        return
    sweep_staging()
    root = staging_root()
    try:
        folder = Path(tempfile.mkdtemp(prefix=f"{STAGING_PREFIX}{os.getpid()}-", dir=root))
    except OSError as exc:
        raise RenderError(
            f"No staging folder can be made in {root} ({exc.strerror or exc}); set {STAGING_ENV}."
        ) from None
    name = loc.text.rstrip("/").rsplit("/", 1)[-1]
    local = folder / (re.sub(r"[^A-Za-z0-9._-]", "_", name).lstrip(".") or "output")
    try:
        yield local
        if not local.is_file():
            raise RenderError(f"Nothing was rendered for {redact(loc.text)}.")
        publish(local, loc, cancelled)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def publish(local: Path, where: str | Path | Location, cancelled: Callable[[], bool] | None = None) -> None:
    """Move a finished local file to its destination whole (see the module's docstring); RenderError (or
    UploadCancelled) when it cannot, with nothing new left there. ``local`` is gone afterwards either way."""
    loc = location(where, for_writing=True, what="Output")
    try:
        if loc.remote:
            _upload(local, loc, cancelled)
        else:
            write_file_atomically(loc.path, lambda temporary: _move(local, temporary))
    finally:
        Path(local).unlink(missing_ok=True)


def _move(source: Path, target: Path) -> None:
    try:
        os.replace(source, target)
    except OSError:  # another filesystem (EXDEV): copy instead
        shutil.copyfile(source, target)


def _upload(local: Path, loc: Location, cancelled: Callable[[], bool] | None) -> None:
    from fsspec.callbacks import Callback

    shown = redact(loc.text)

    class Watch(Callback):  # asked between parts: a cancelled run stops its upload mid-way
        def call(self, *args, **kwargs):
            if cancelled is not None and cancelled():
                raise UploadCancelled(f"The upload to {shown} was cancelled.")

    fs, path = filesystem(loc)
    size = os.path.getsize(local)
    before = _tag(fs, path)
    options = {"chunksize": UPLOAD_CHUNK_BYTES} if loc.scheme == "s3" else {}
    try:
        if cancelled is not None and cancelled():
            raise UploadCancelled(f"The upload to {shown} was cancelled.")
        fs.put_file(str(local), path, callback=Watch(), **options)
        fs.invalidate_cache(path)
        uploaded = fs.info(path).get("size")
        if uploaded != size:
            raise OSError(f"the object has {uploaded} bytes, the rendered file {size}")
    except BaseException as exc:
        after = _tag(fs, path)
        if after is not None and after != before:  # this upload made it: take it back
            with suppress(Exception):
                fs.rm_file(path)
                fs.invalidate_cache(path)
        if isinstance(exc, RenderError) or not isinstance(exc, Exception):
            raise
        raise RenderError(f"Could not upload to {shown}: {failure(exc)}.") from None


def _tag(fs, path: str) -> tuple | None:
    """What identifies the object now there (ETag or generation, modification time, size), or None if absent."""
    try:
        fs.invalidate_cache(path)
        info = fs.info(path)
    except Exception:  # absent, or unreachable: nothing known to be there
        return None
    keys = ("ETag", "etag", "generation", "LastModified", "last_modified", "mtime", "size")
    return tuple(str(info.get(key)) for key in keys)
