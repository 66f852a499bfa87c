"""Verify once, trust while unchanged: which package files already matched their checksums, by identity on disk.

Hashing every file of a package on every load is what a ``lipsync render`` call paid before its first frame:
4.0 s of 7.4 s of start-up for the 1.5 GB, 523-frame 1280x720 package (benchmarks/RESULTS.md, "Start-up"), twice
that at 1080p. So a load re-hashes only what changed since a file last matched: a file is recorded as verified
with its digest and what identifies its content on disk, ``(size, mtime_ns, ctime_ns, inode, device)``, and a
later load skips hashing it while all five are the same. The change time is what catches a file rewritten in
place with its size and modification time put back: the kernel moves ``ctime`` on every write, rename or chmod,
and no unprivileged call can set it back. ``LIPSYNC_VERIFY=full`` hashes every file on every render (``package
validate`` always does).

The record is one small JSON file per package, in a per-user cache (``$LIPSYNC_CACHE/verified/``, default
``${XDG_CACHE_HOME:-~/.cache}/lipsync/verified/``), named by the hash of the package's real path: a read-only or
shared package needs no write access, and each user trusts only what they (or a render as them) hashed. It is a
cache and nothing more: read with a size bound and dropped whole when anything in it is malformed or it names
another package or manifest; an entry only lets a file whose manifest checksum, name and identity all equal the
entry's skip its hash, and the record is only ever looked up by the manifest's own (already contained) file
names, never walked, so it cannot point anywhere. It is replaced atomically (concurrent renders of one package
each write a whole record; the last wins, and either is right), and a record that cannot be written is skipped.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path

from lipsync_render import json_bounded
from lipsync_render.errors import LipsyncError, OptionError
from lipsync_render.paths import file_identity, user_cache_dir

VERIFY_ENV = "LIPSYNC_VERIFY"  # "full": hash every file on every load; "changed" (the default): what changed
VERIFY_MODES = ("changed", "full")
RECORD_VERSION = 1
MAX_RECORD_BYTES = 1 << 20

Identity = tuple[int, int, int, int, int]


def verify_mode() -> str:
    """``LIPSYNC_VERIFY``: 'changed' (default) or 'full'; anything else is refused (OptionError, exit 2)."""
    mode = os.environ.get(VERIFY_ENV, "").strip().lower() or "changed"
    if mode not in VERIFY_MODES:
        raise OptionError(f"{VERIFY_ENV} is '{os.environ[VERIFY_ENV]}'; it must be 'full' or 'changed' (or unset).")
    return mode


def records_dir() -> Path:
    return user_cache_dir("verified")


def identity(path: Path) -> Identity | None:
    """What identifies a file's content on disk, or None when it cannot be read."""
    return file_identity(path)


def record_path(root: Path) -> Path:
    return records_dir() / f"{hashlib.sha256(os.fsencode(os.path.realpath(root))).hexdigest()[:40]}.json"


def mismatched_files(
    root: Path,
    manifest_digest: str,
    checksums: dict[Path, str],
    sha256_file: Callable[[Path], str],
    trust_record: bool,
) -> list[Path]:
    """The files whose sha256 differs from the manifest's, hashing only those the record cannot vouch for
    (all of them unless ``trust_record``); the files that matched are recorded as verified."""
    real_root = os.path.realpath(root)
    record = _read_record(record_path(root), real_root, manifest_digest)
    entries = dict(record)
    mismatched = []
    for path, expected in checksums.items():
        rel = os.path.relpath(path, root)
        before = identity(path)
        if trust_record and before is not None and record.get(rel) == (*before, expected):
            continue
        if sha256_file(path) != expected:
            mismatched.append(path)
            entries.pop(rel, None)
        elif before is not None and identity(path) == before:  # not changed while it was hashed
            entries[rel] = (*before, expected)
        else:
            entries.pop(rel, None)
    wanted = {os.path.relpath(path, root) for path in checksums}
    entries = {rel: entry for rel, entry in entries.items() if rel in wanted}
    if entries != record:
        _write_record(record_path(root), real_root, manifest_digest, entries)
    return mismatched


def _read_record(path: Path, real_root: str, manifest_digest: str) -> dict[str, tuple]:
    """The record's entries, or none when it is absent, unreadable, malformed or about another package."""
    try:
        with open(path, "rb") as file:
            text = file.read(MAX_RECORD_BYTES + 1)
        data = json_bounded.loads(text, path) if len(text) <= MAX_RECORD_BYTES else None
    except (OSError, LipsyncError):
        return {}
    if not (
        isinstance(data, dict)
        and data.get("version") == RECORD_VERSION
        and data.get("root") == real_root
        and data.get("manifest") == manifest_digest
        and isinstance(data.get("files"), dict)
    ):
        return {}
    entries = {}
    for rel, entry in data["files"].items():
        if not (
            isinstance(entry, list)
            and len(entry) == 6
            and all(type(v) is int for v in entry[:5])
            and isinstance(entry[5], str)
        ):
            return {}
        entries[rel] = tuple(entry)
    return entries


def _write_record(path: Path, real_root: str, manifest_digest: str, entries: dict[str, tuple]) -> None:
    from lipsync_render.paths import write_file_atomically

    text = json.dumps(
        {
            "version": RECORD_VERSION,
            "root": real_root,
            "manifest": manifest_digest,
            "files": {rel: list(entry) for rel, entry in sorted(entries.items())},
        }
    )
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_file_atomically(path, lambda temporary: Path(temporary).write_text(text))
    except (OSError, LipsyncError):
        pass  # a cache that cannot be written: the next load hashes again
