"""Reading and writing by location: local paths with the standard library, URLs through fsspec.

fsspec is the library because it is one API over s3 (s3fs), gcs (gcsfs), azure (adlfs), http and local files, and
each of those filesystems brings its own credential chain (boto's environment, config files and instance roles;
Google's application default credentials; Azure's environment and managed identity), so this tool never handles
a secret. s3fs also honours ``AWS_ENDPOINT_URL`` (botocore's standard variable) for an S3-compatible server such
as MinIO or the tests' moto server, so the code has no test-only hook.

Every operation on a URL turns the filesystem's own exception (botocore, aiohttp, azure and OSError types) into
one LipsyncError sentence of the caller's class; local paths reuse :mod:`lipsync_render.paths`.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

from lipsync_render.errors import LipsyncError, OptionError
from lipsync_render.paths import replaceable_problem, write_file_atomically
from lipsync_render.storage.urls import Location, parse_location, redact

MAX_TEXT_BYTES = 1 << 20  # a sidecar or manifest
MAX_AUDIO_BYTES = 2 << 30  # about 3 hours of 48 kHz stereo 16-bit WAV
# The pip extra that brings each scheme's filesystem.
EXTRAS = {"s3": ("s3fs", "s3"), "gs": ("gcsfs", "gcs"), "gcs": ("gcsfs", "gcs"), "az": ("adlfs", "azure")}
EXTRAS.update(abfs=EXTRAS["az"], http=("aiohttp", "http"), https=("aiohttp", "http"))


def location(where: str | Path | Location, *, for_writing: bool = False, what: str = "Input") -> Location:
    return where if isinstance(where, Location) else parse_location(where, for_writing=for_writing, what=what)


def filesystem(loc: Location):
    """(fsspec filesystem, path in it) for a remote location; OptionError when its package is not installed."""
    package, extra = EXTRAS.get(loc.scheme, ("fsspec", "cloud"))
    try:
        import fsspec

        return fsspec.core.url_to_fs(loc.text)
    except ImportError:
        raise OptionError(
            f"{loc.scheme}:// URLs need the {package} package, which is not installed: "
            f"pip install 'lipsync-render[{extra}]'."
        ) from None


def failure(exc: BaseException) -> str:
    """One line from a filesystem's exception, without a URL's query or credentials."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    text = re.sub(r"\?\S*", "", text)
    return text[:200]


def exists(where: str | Path | Location) -> bool:
    """Whether a file or object is there now (a fresh look: fsspec's listing cache is dropped first)."""
    loc = location(where)
    if not loc.remote:
        return os.path.lexists(loc.path)
    fs, path = filesystem(loc)
    try:
        fs.invalidate_cache(path)
        return bool(fs.isfile(path))
    except Exception as exc:  # the filesystem's own types; an unreachable store is a failure, not "absent"
        raise LipsyncError(f"Could not look for {redact(loc.text)}: {failure(exc)}.") from None


def remote_size(loc: Location, error: type[LipsyncError]) -> int | None:
    fs, path = filesystem(loc)
    try:
        fs.invalidate_cache(path)
        info = fs.info(path)
    except FileNotFoundError:
        raise error(f"{redact(loc.text)} does not exist.") from None
    except Exception as exc:  # the filesystem's own types
        raise error(f"Could not read {redact(loc.text)}: {failure(exc)}.") from None
    if info.get("type") not in (None, "file"):
        raise error(f"{redact(loc.text)} is not a file.")
    size = info.get("size")
    return size if isinstance(size, int) else None  # an http server may not say


def read_bytes(where, max_bytes: int = MAX_TEXT_BYTES, error: type[LipsyncError] = LipsyncError) -> bytes:
    """The whole file or object, at most ``max_bytes`` (more is an error, never a truncation)."""
    loc = location(where)
    shown = str(loc) if not loc.remote else redact(loc.text)
    if not loc.remote:
        try:
            with open(loc.path, "rb") as f:
                data = f.read(max_bytes + 1)
        except FileNotFoundError:
            raise error(f"{shown} does not exist.") from None
        except OSError as exc:
            raise error(f"Could not read {shown}: {exc.strerror or exc}.") from None
    else:
        size = remote_size(loc, error)
        if size is not None and size > max_bytes:
            raise error(f"{shown} is {size} bytes; at most {max_bytes} are read.")
        fs, path = filesystem(loc)
        try:
            data = fs.cat_file(path, start=0, end=max_bytes + 1)
        except Exception as exc:  # the filesystem's own types
            raise error(f"Could not read {shown}: {failure(exc)}.") from None
    if len(data) > max_bytes:
        raise error(f"{shown} is more than {max_bytes} bytes; at most {max_bytes} are read.")
    return data


def read_text(where, max_bytes: int = MAX_TEXT_BYTES, error: type[LipsyncError] = LipsyncError) -> str:
    """A UTF-8 text (a sidecar beside an output, a manifest), at most ``max_bytes``."""
    data = read_bytes(where, max_bytes, error)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise error(f"{where} is not UTF-8 text.") from None


def write_text_atomically(where, text: str) -> None:
    """Write a small text whole or not at all: a local file by rename (see paths.write_file_atomically), an
    object by one PUT (S3, GCS and Azure show an object whole or not at all). RenderError on failure."""
    from lipsync_render.errors import RenderError

    loc = location(where, for_writing=True, what="Output")
    data = text.encode("utf-8")
    if not loc.remote:
        write_file_atomically(loc.path, lambda temporary: temporary.write_bytes(data))
        return
    fs, path = filesystem(loc)
    try:
        fs.pipe_file(path, data)
    except Exception as exc:  # the filesystem's own types
        raise RenderError(f"Could not write {redact(loc.text)}: {failure(exc)}.") from None
    finally:
        fs.invalidate_cache(path)


def remove(where) -> None:
    """Delete a file or object if it is there (a local one only when it is a regular file)."""
    loc = location(where, for_writing=True, what="Output")
    if not loc.remote:
        if loc.path.is_file() and not loc.path.is_symlink():
            loc.path.unlink(missing_ok=True)
        return
    fs, path = filesystem(loc)
    try:
        fs.rm_file(path)
    except FileNotFoundError:
        pass
    finally:
        fs.invalidate_cache(path)


def local_name(loc: Location) -> str:
    """A file name for a fetched copy: a digest of the URL (two URLs never share one) and its sanitised name."""
    base = re.sub(r"[^A-Za-z0-9._-]", "_", loc.text.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1])[-80:]
    return f"{hashlib.sha256(loc.text.encode()).hexdigest()[:16]}-{base.lstrip('.') or 'input'}"


def fetch_to_local(
    where, dest_dir: Path, max_bytes: int = MAX_AUDIO_BYTES, error: type[LipsyncError] = LipsyncError
) -> Path:
    """A local path for an input: the path itself when local, else a copy in ``dest_dir`` (downloaded under a
    temporary name, size-bounded, renamed when whole). The caller removes ``dest_dir`` when done."""
    loc = location(where, what="Input")
    if not loc.remote:
        return loc.path
    size = remote_size(loc, error)
    shown = redact(loc.text)
    if size is not None and size > max_bytes:
        raise error(f"{shown} is {size} bytes; at most {max_bytes} are read.")
    dest_dir.mkdir(parents=True, exist_ok=True)
    final = dest_dir / local_name(loc)
    temporary = dest_dir / f".{final.name}.{os.getpid()}.tmp"
    fs, path = filesystem(loc)
    try:
        get_bounded(fs, path, temporary, max_bytes)
        problem = replaceable_problem(final)
        if problem:
            raise error(problem)
        os.replace(temporary, final)
    except LipsyncError:
        raise
    except Exception as exc:  # the filesystem's own types
        raise error(f"Could not fetch {shown}: {failure(exc)}.") from None
    finally:
        temporary.unlink(missing_ok=True)
    return final


def get_bounded(fs, path: str, local: Path, max_bytes: int) -> None:
    """Download to ``local``, stopping (OSError) past ``max_bytes``: a server that under-reports a size still
    cannot fill the disk."""
    from fsspec.callbacks import Callback

    class Bounded(Callback):
        def call(self, *args, **kwargs):
            if self.value > max_bytes:
                raise OSError(f"more than {max_bytes} bytes")

    fs.get_file(path, str(local), callback=Bounded())
    if local.stat().st_size > max_bytes:
        raise OSError(f"more than {max_bytes} bytes")
