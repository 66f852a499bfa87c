from pathlib import Path

import pytest

from lipsync_render.errors import OptionError
from lipsync_render.storage.urls import is_remote, is_url, parse_location, redact


@pytest.mark.parametrize(
    "text",
    ["s3://b/k.wav", "gs://b/k", "gcs://b/k", "az://c/k", "abfs://c@acct.dfs.core.windows.net/k", "https://h/a.wav"],
)
def test_readable_urls(text):
    location = parse_location(text)
    assert location.remote and location.path is None and location.text == text
    assert is_url(text) and is_remote(text)


@pytest.mark.parametrize("text", ["out.mp4", "take:2.wav", "./a/b.mp4", "/abs/x.mp4", "C:\\x\\y.mp4"])
def test_local_paths_stay_paths(text):
    location = parse_location(text)
    assert not location.remote and location.path == Path(text) and not is_url(text)


def test_file_urls_are_local_paths():
    assert parse_location("file:///tmp/a%20b.mp4", for_writing=True).path == Path("/tmp/a b.mp4")
    assert parse_location("file://localhost/tmp/x.wav").path == Path("/tmp/x.wav")
    assert not is_remote("file:///tmp/x")
    with pytest.raises(OptionError, match="must name this machine"):
        parse_location("file://other-host/tmp/x.wav")


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("ftp://host/a.wav", "ftp: scheme, which is not supported"),
        ("data:audio/wav;base64,AAAA", "data: scheme, which is not supported"),
        ("unknown://x/y", "unknown: scheme"),
        ("simplecache::s3://b/k", "chained fsspec URL"),
        ("zip::s3://b/k.zip", "chained fsspec URL"),
        ("s3://", "names no bucket"),
        ("s3://bucket", "names a bucket but no object"),
        ("s3://b/k?versionId=3", "query string"),
        ("s3://b/k\n.wav", "control character"),
    ],
)
def test_refused_inputs(text, words):
    with pytest.raises(OptionError, match=words) as caught:
        parse_location(text, what="Audio")
    assert caught.value.exit_code == 2 and str(caught.value).startswith("Audio ")
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("text", ["https://h/out.mp4", "http://h/out.mp4", "ftp://h/out.mp4"])
def test_outputs_only_to_object_stores_and_files(text):
    with pytest.raises(OptionError, match=r"cannot be written over|not supported"):
        parse_location(text, for_writing=True, what="Output")
    assert parse_location("s3://b/out.mp4", for_writing=True).remote


@pytest.mark.parametrize(
    "text",
    [
        "s3://AKIAEXAMPLE:s3cr3t@bucket/k.wav",
        "s3://AKIAEXAMPLE@bucket/k.wav",
        "https://user:s3cr3t@host/a.wav",
        "https://host/a.wav?X-Amz-Credential=AKIA&X-Amz-Signature=s3cr3t",
        "https://acct.blob.core.windows.net/c/a.wav?sv=2022&sig=s3cr3t",
        "https://host/a.wav?key=s3cr3t",
        "az://container:s3cr3t@acct/k",
        "gs://user:s3cr3t@bucket/k",
    ],
)
def test_credentials_in_urls_are_refused_and_never_shown(text):
    with pytest.raises(OptionError, match="carries credentials") as caught:
        parse_location(text)
    assert "s3cr3t" not in str(caught.value) and "AKIAEXAMPLE" not in str(caught.value)


def test_plain_https_query_is_allowed_and_redacted_when_shown():
    assert parse_location("https://host/a.wav?download=1").remote
    assert redact("https://u:p@host/a.wav?sig=x") == "https://***@host/a.wav"
    assert len(redact("s3://b/" + "k" * 500)) == 200
