"""Inputs and outputs by location: local paths, file:// and object-store or web URLs (see each module).

- urls: which texts are URLs, the allowed schemes, credentials refused (OptionError, exit 2)
- remote: exists, read_text, write_text_atomically, fetch_to_local, remove (fsspec under the hood)
- upload: staged_output / publish, so that a reader never sees a partial file or object
- package_cache: fetch_package, packages by URL cached per node by manifest checksum

Layer: above package (the cache validates with the package loader), below synth and everything that renders.
"""

from lipsync_render.storage.package_cache import PackageLease, cache_root, evict, fetch_package
from lipsync_render.storage.remote import exists, fetch_to_local, read_bytes, read_text, remove, write_text_atomically
from lipsync_render.storage.upload import UploadCancelled, publish, staged_output, sweep_staging
from lipsync_render.storage.urls import (
    READ_SCHEMES,
    WRITE_SCHEMES,
    Location,
    is_remote,
    is_url,
    parse_location,
    redact,
)

__all__ = [
    "READ_SCHEMES",
    "WRITE_SCHEMES",
    "Location",
    "PackageLease",
    "UploadCancelled",
    "cache_root",
    "evict",
    "exists",
    "fetch_package",
    "fetch_to_local",
    "is_remote",
    "is_url",
    "parse_location",
    "publish",
    "read_bytes",
    "read_text",
    "redact",
    "remove",
    "staged_output",
    "sweep_staging",
    "write_text_atomically",
]
