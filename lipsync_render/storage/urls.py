"""Which inputs and outputs are URLs, which schemes are allowed, and refusing credentials in a manifest.

A manifest is hostile input, so a location is checked before anything is opened: the scheme must be one this tool
reads (or writes), a URL may carry no user name, password or credential query (credentials come from each
filesystem's own chain: environment, config files, instance roles), and nothing is echoed back with a secret in it.

What counts as a URL: ``scheme://...`` (RFC 3986 scheme letters), fsspec's chained ``a::b`` form (refused: it
would let a manifest stack arbitrary filesystems such as ``zip::`` or ``memory::``) and ``data:`` (refused). Any
other text is a local path, so a file called ``take:2.wav`` stays a file; on Windows ``C:\\x`` is a path too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl, unquote

from lipsync_render.errors import OptionError

# fsspec protocol names; gcs and gs are one filesystem (gcsfs), az and abfs one (adlfs).
OBJECT_SCHEMES = ("s3", "gs", "gcs", "az", "abfs")
READ_SCHEMES = (*OBJECT_SCHEMES, "https", "http", "file")
WRITE_SCHEMES = (*OBJECT_SCHEMES, "file")
MAX_URL_CHARS = 4096
# Query keys that carry a secret: presigned S3 and GCS URLs, Azure SAS tokens, API keys, OAuth tokens.
CREDENTIAL_KEYS = frozenset(
    {
        "x-amz-credential",
        "x-amz-signature",
        "x-amz-security-token",
        "awsaccesskeyid",
        "signature",
        "x-goog-credential",
        "x-goog-signature",
        "googleaccessid",
        "sig",
        "sas",
        "token",
        "access_token",
        "id_token",
        "key",
        "apikey",
        "api_key",
        "password",
        "secret",
        "credential",
        "credentials",
        "auth",
    }
)
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*)(://|::)")
_ALLOWED_TEXT = "a local path or an s3://, gs://, az://, abfs://, https:// or file:// URL"
_WRITABLE_TEXT = "a local path or an s3://, gs://, az://, abfs:// or file:// URL"


@dataclass(frozen=True)
class Location:
    """A checked input or output: a local path (``path`` set, ``scheme`` '' or 'file') or a remote URL."""

    text: str
    scheme: str
    path: Path | None = None

    @property
    def remote(self) -> bool:
        return self.path is None

    def __str__(self) -> str:
        return self.text if self.remote else str(self.path)


def url_scheme(text: str) -> str | None:
    """The lower-case scheme of a URL-shaped text (``s3``, ``https``, ``data``, ...), or None for a local path."""
    match = _SCHEME.match(text)
    if match:
        return match[1].lower()
    if text[:5].lower() == "data:":
        return "data"
    return None


def is_url(text: str | Path) -> bool:
    """Whether ``text`` is meant as a URL (allowed or not), rather than a local path."""
    return isinstance(text, str) and url_scheme(text) is not None


def is_remote(text: str | Path) -> bool:
    """Whether ``text`` names something reached over the network (any URL but file://)."""
    return is_url(text) and url_scheme(str(text)) != "file"


def redact(text: str) -> str:
    """The URL as it may be shown: no user info, no query, at most 200 characters."""
    match = _SCHEME.match(text)
    if match and match[2] == "://":
        rest = text[match.end() :]
        host, slash, path = rest.partition("/")
        if "@" in host:
            host = "***@" + host.rpartition("@")[2]
        text = f"{match[1]}://{host}{slash}{path.split('?', 1)[0]}"
    text = text.split("?", 1)[0] if "?" in text else text
    return text if len(text) <= 200 else text[:197] + "..."


def parse_location(text: str | Path, *, for_writing: bool = False, what: str = "Input") -> Location:
    """Check a manifest's or command line's location; OptionError (exit 2) saying why it cannot be used.

    ``what`` starts the sentence ("Output", "Audio", "Package").
    """
    if isinstance(text, Path):
        return Location(str(text), "", text)
    if any(ord(c) < 32 or ord(c) == 127 for c in text):
        raise OptionError(f"{what} {redact(text)!r} contains a control character; it is not a usable path or URL.")
    scheme = url_scheme(text)
    if scheme is None:
        return Location(text, "", Path(text).expanduser())
    shown = redact(text)
    if len(text) > MAX_URL_CHARS:
        raise OptionError(f"{what} URL {shown!r} is {len(text)} characters long; at most {MAX_URL_CHARS} are read.")
    if "::" in text.split("://", 1)[0]:
        raise OptionError(
            f"{what} {shown!r} is a chained fsspec URL (a::b), which is not supported; use {_ALLOWED_TEXT}."
        )
    allowed = WRITE_SCHEMES if for_writing else READ_SCHEMES
    if scheme not in allowed:
        if for_writing and scheme in READ_SCHEMES:
            raise OptionError(f"{what} {shown!r} cannot be written over {scheme}://; write to {_WRITABLE_TEXT}.")
        raise OptionError(
            f"{what} {shown!r} uses the {scheme}: scheme, which is not supported; use "
            f"{_WRITABLE_TEXT if for_writing else _ALLOWED_TEXT}."
        )
    rest = text.split("://", 1)[1]
    authority, _, path_and_query = rest.partition("/")
    path_part, _, query = path_and_query.partition("?")
    if "?" in authority:
        authority, _, query = authority.partition("?")
    _refuse_credentials(scheme, authority, query, shown, what)
    if scheme == "file":
        if authority not in ("", "localhost"):
            raise OptionError(f"{what} {shown!r} names the host {authority!r}; a file:// URL must name this machine.")
        if query:
            raise OptionError(f"{what} {shown!r} has a query string, which a file:// URL cannot have.")
        path = unquote("/" + path_part)
        if "\0" in path:
            raise OptionError(f"{what} {shown!r} contains a NUL character; it is not a usable path.")
        return Location(text, "file", Path(path))
    if not authority:
        kind = "host" if scheme in ("http", "https") else "bucket or container"
        raise OptionError(f"{what} {shown!r} names no {kind}.")
    if scheme in OBJECT_SCHEMES and query:
        raise OptionError(f"{what} {shown!r} has a query string, which a {scheme}:// URL cannot have here.")
    if scheme in OBJECT_SCHEMES and not path_part.strip("/"):
        raise OptionError(f"{what} {shown!r} names a bucket but no object in it.")
    return Location(text, scheme, None)


def _refuse_credentials(scheme: str, authority: str, query: str, shown: str, what: str) -> None:
    userinfo = authority.rpartition("@")[0] if "@" in authority else None
    # abfs://container@account.dfs.core.windows.net/path names a container, not a user: allowed without a colon.
    azure_container = scheme in ("az", "abfs") and userinfo is not None and ":" not in userinfo
    keys = {key.lower() for key, _ in parse_qsl(query, keep_blank_values=True)}
    if (userinfo is not None and not azure_container) or keys & CREDENTIAL_KEYS:
        raise OptionError(
            f"{what} {shown!r} carries credentials in the URL; give none in a manifest or on the command line: "
            "they come from the environment or the storage tool's own config files."
        )
