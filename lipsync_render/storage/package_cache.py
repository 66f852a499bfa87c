"""Packages given by URL: fetched once per node into a cache keyed by the manifest's checksum, shared, evicted.

A package's identity is the sha256 of its package.json (:attr:`Package.checksum`), which lists every file's
sha256, so the cache key is known after reading one small file, and a changed package is a new key. Layout::

    $LIPSYNC_CACHE/packages/ (default ${XDG_CACHE_HOME:-~/.cache}/lipsync/packages/)
        <checksum>/          the package, exactly as its manifest lists it
        <checksum>.lock      flock'ed: shared while a worker uses the package, exclusive while one installs or
                             evicts it; its mtime is the last use (least recently used goes first)
        .evict.lock          held while evicting, and while a lock changes from exclusive to shared
        .install-PID-XXXX/   a download in progress (a dead process's is swept at the next eviction)

The manifest is hostile: it is checked by the loader's own rules (:func:`check_manifest`), every file it names must
stay inside the package (:func:`contained_path`, the loader's containment check), every file must have a checksum
(a copy that cannot be verified is refused), the download is bounded by the cache size, and the downloaded folder
is validated by :func:`check_package` with checksums before it is renamed into place; a reader never sees a half
installed package. Lock files are never deleted (an unlinked lock file would let two processes lock two inodes).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

from lipsync_render import json_bounded
from lipsync_render.errors import OptionError, PackageError
from lipsync_render.package.loader import check_package
from lipsync_render.package.manifest import MANIFEST, MAX_MANIFEST_BYTES, check_manifest
from lipsync_render.paths import CACHE_ENV, contained_path, user_cache_dir
from lipsync_render.storage.remote import failure, filesystem, get_bounded, location, read_bytes
from lipsync_render.storage.urls import Location, redact

SIZE_ENV = "LIPSYNC_PACKAGE_CACHE_GB"
DEFAULT_CACHE_GB = 20.0
LOCK_WAIT_S = 3600.0  # another worker of this node may be downloading a large package
_ENTRY = re.compile(r"^[0-9a-f]{64}$")
_INSTALL = re.compile(r"^\.install-(\d+)-")


def cache_root() -> Path:
    return user_cache_dir("packages")


def cache_limit_bytes() -> int:
    text = os.environ.get(SIZE_ENV, "")
    try:
        gib = float(text) if text else DEFAULT_CACHE_GB
    except ValueError:
        gib = -1.0
    if not 0 < gib < 1e6:
        raise OptionError(f"{SIZE_ENV} is {text!r}; it must be a number of GiB above 0 (default {DEFAULT_CACHE_GB:g}).")
    return int(gib * (1 << 30))


@dataclass
class PackageLease:
    """A package folder on this node, kept from eviction until :meth:`close` (a shared flock)."""

    path: Path
    checksum: str | None = None
    _fd: int | None = field(default=None, repr=False)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # releases the flock
            self._fd = None

    def __enter__(self) -> PackageLease:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:
        self.close()


def fetch_package(where: str | Path | Location, root: Path | None = None) -> PackageLease:
    """The package at ``where`` as a local folder: a local path or name as given (the loader resolves it), a URL
    from this node's cache, fetched and verified first when absent. PackageError names what is wrong."""
    import fcntl

    loc = location(where, what="Package")
    if not loc.remote:
        return PackageLease(loc.path)
    root = root or cache_root()
    limit = cache_limit_bytes()
    shown = redact(loc.text)
    base = loc.text.rstrip("/")
    manifest_bytes = read_bytes(f"{base}/{MANIFEST}", MAX_MANIFEST_BYTES, PackageError)
    checksum = hashlib.sha256(manifest_bytes).hexdigest()
    try:
        root.mkdir(parents=True, exist_ok=True)
        fd = os.open(root / f"{checksum}.lock", os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as exc:
        raise PackageError(
            f"The package cache {root} cannot be used ({exc.strerror or exc}); set {CACHE_ENV}."
        ) from None
    lease = PackageLease(root / checksum, checksum, fd)
    try:
        _lock(fd, shared=True, what=shown)
        if not _installed(lease.path, checksum):
            fcntl.flock(fd, fcntl.LOCK_UN)  # never convert shared to exclusive: two converting workers would wait
            _lock(fd, shared=False, what=shown)  # on each other; look again once held
            if not _installed(lease.path, checksum):
                _install(loc, manifest_bytes, lease.path, limit)
            with _held(root / ".evict.lock"):  # no eviction between dropping exclusive and taking shared
                _lock(fd, shared=True, what=shown)
        os.utime(fd)
        evict(root, limit)
    except BaseException:
        lease.close()
        raise
    return lease


def _installed(entry: Path, checksum: str) -> bool:
    try:
        return hashlib.sha256((entry / MANIFEST).read_bytes()).hexdigest() == checksum
    except OSError:
        return False


def _install(loc: Location, manifest_bytes: bytes, entry: Path, limit: int) -> None:
    shown = redact(loc.text)
    try:
        manifest = json_bounded.loads(manifest_bytes, f"{shown}/{MANIFEST}")
    except json_bounded.JsonProblem as exc:
        raise PackageError(str(exc)) from None
    if not isinstance(manifest, dict):
        raise PackageError(f"{shown}/{MANIFEST} must hold a JSON object.")
    problems = check_manifest(manifest, f"{shown}/{MANIFEST}")
    if problems:
        raise PackageError(problems[0])
    files = sorted({rel for rel in manifest["files"].values() if rel is not None})
    checksums = manifest.get("checksums") or {}
    unverifiable = [rel for rel in files if rel not in checksums]
    if unverifiable:
        raise PackageError(
            f"{shown}/{MANIFEST} has no checksum for '{unverifiable[0]}'; a package fetched by URL must list a "
            "checksum for every file, or its copy cannot be verified."
        )
    folder = Path(tempfile.mkdtemp(prefix=f".install-{os.getpid()}-", dir=entry.parent))
    try:
        targets = {}
        for rel in files:
            target = contained_path(folder, rel)
            if target is None:
                raise PackageError(
                    f"{shown}/{MANIFEST} names the file '{rel}', which is outside the package; package files must "
                    "lie inside it."
                )
            targets[rel] = target
        fs, base_path = filesystem(loc)
        remote = {
            rel: f"{base_path.rstrip('/')}/{quote(rel) if loc.scheme in ('http', 'https') else rel}" for rel in files
        }
        try:
            sizes = {rel: fs.info(path).get("size") or 0 for rel, path in remote.items()}
        except FileNotFoundError as exc:
            raise PackageError(f"A file the manifest of {shown} lists is missing: {failure(exc)}.") from None
        total = sum(sizes.values())
        if total > limit:
            raise PackageError(
                f"The package {shown} is {total / (1 << 30):.1f} GiB, more than the package cache holds "
                f"({limit / (1 << 30):.1f} GiB); raise {SIZE_ENV}."
            )
        (folder / MANIFEST).write_bytes(manifest_bytes)
        for rel, target in targets.items():
            target.parent.mkdir(parents=True, exist_ok=True)
            get_bounded(fs, remote[rel], target, sizes[rel] or limit)
        report = check_package(folder, verify_checksums=True)
        if report.problems:
            raise PackageError(report.problems[0].replace(str(folder), shown))
        if entry.exists():
            shutil.rmtree(entry)  # a damaged copy (its manifest no longer matches)
        os.rename(folder, entry)
    except PackageError:
        raise
    except Exception as exc:  # the filesystem's own types
        raise PackageError(f"Could not fetch the package {shown}: {failure(exc)}.") from None
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def evict(root: Path, limit: int) -> list[Path]:
    """Delete least recently used packages until the cache is within ``limit`` bytes; never one in use (its lock
    is held shared by a worker). Also sweeps the install folders of dead processes. The folders removed."""
    import fcntl

    import psutil

    removed = []
    with _held(root / ".evict.lock"):
        entries = []
        for path in root.iterdir():
            match = _INSTALL.match(path.name)
            if match and not psutil.pid_exists(int(match[1])):
                shutil.rmtree(path, ignore_errors=True)
            elif _ENTRY.match(path.name) and path.is_dir() and not path.is_symlink():
                lock = root / f"{path.name}.lock"
                used = lock.stat().st_mtime if lock.exists() else 0.0
                entries.append((used, path, lock, _size(path)))
        total = sum(entry[3] for entry in entries)
        for _, path, lock, size in sorted(entries, key=lambda e: e[0]):
            if total <= limit:
                break
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue  # in use
            try:
                trash = path.with_name(f".install-{os.getpid()}-evicted-{path.name[:16]}")
                os.rename(path, trash)  # gone from readers at once; deleted below
                shutil.rmtree(trash, ignore_errors=True)
                total -= size
                removed.append(path)
            finally:
                os.close(fd)
    return removed


def _size(folder: Path) -> int:
    total = 0
    for dirpath, _, names in os.walk(folder):
        for name in names:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_size
            except OSError:
                pass
    return total


def _lock(fd: int, shared: bool, what: str, wait_s: float = LOCK_WAIT_S) -> None:
    import fcntl

    mode = (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB
    deadline = time.monotonic() + wait_s
    while True:
        try:
            fcntl.flock(fd, mode)
            return
        except BlockingIOError:
            if time.monotonic() > deadline:
                raise PackageError(
                    f"Waited {wait_s:.0f} s for another worker on this node to finish fetching {what}."
                ) from None
            time.sleep(0.05)


class _held:
    """An exclusive flock on a file for the duration of a ``with`` block."""

    def __init__(self, path: Path):
        self.path = path

    def __enter__(self):
        import fcntl

        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc):
        os.close(self.fd)
