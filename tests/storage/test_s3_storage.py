"""Storage against a moto S3 server over real HTTP on 127.0.0.1 (see tests/jobs/cluster_fixtures.py)."""

import os

import pytest

from lipsync_render.errors import AudioError, RenderError
from lipsync_render.storage import (
    UploadCancelled,
    exists,
    fetch_to_local,
    publish,
    read_text,
    staged_output,
    write_text_atomically,
)
from lipsync_render.storage.upload import STAGING_ENV, STAGING_PREFIX, UPLOAD_CHUNK_BYTES, sweep_staging


@pytest.fixture
def s3(s3_bucket):
    import boto3

    return boto3.client("s3")


@pytest.fixture(autouse=True)
def staging(tmp_path, monkeypatch):
    folder = tmp_path / "staging"
    folder.mkdir()
    monkeypatch.setenv(STAGING_ENV, str(folder))
    return folder


def keys(s3, bucket="lipsync-test"):
    return sorted(item["Key"] for item in s3.list_objects_v2(Bucket=bucket).get("Contents", []))


def test_staged_output_appears_whole_and_leaves_nothing_local(s3, staging):
    url = "s3://lipsync-test/out/clip.mp4"
    with staged_output(url) as local:
        assert local.parent.parent == staging and local.name == "clip.mp4"
        local.write_bytes(b"x" * 1000)
        assert not exists(url)
    assert s3.get_object(Bucket="lipsync-test", Key="out/clip.mp4")["Body"].read() == b"x" * 1000
    assert exists(url) and list(staging.iterdir()) == []


def test_a_failed_render_uploads_nothing(s3, staging):
    with pytest.raises(ValueError), staged_output("s3://lipsync-test/out/clip.mp4") as local:
        local.write_bytes(b"half")
        raise ValueError("render failed")
    assert keys(s3) == [] and list(staging.iterdir()) == []


def test_cancelled_multipart_upload_leaves_no_object_and_no_parts(s3, tmp_path):
    local = tmp_path / "big.mp4"
    local.write_bytes(os.urandom(2 * UPLOAD_CHUNK_BYTES + 1000))  # three parts: a multipart upload
    asked = []

    def cancelled():
        asked.append(1)
        return len(asked) > 2  # before the upload, after the size is known: stop after the first part

    with pytest.raises(UploadCancelled, match="was cancelled"):
        publish(local, "s3://lipsync-test/out/big.mp4", cancelled)
    assert keys(s3) == []
    assert s3.list_multipart_uploads(Bucket="lipsync-test").get("Uploads", []) == []
    assert not local.exists()


def test_a_failed_replacement_keeps_the_old_object(s3, tmp_path):
    s3.put_object(Bucket="lipsync-test", Key="out/a.mp4", Body=b"old")
    local = tmp_path / "a.mp4"
    local.write_bytes(b"new")
    with pytest.raises(UploadCancelled):
        publish(local, "s3://lipsync-test/out/a.mp4", lambda: True)
    assert s3.get_object(Bucket="lipsync-test", Key="out/a.mp4")["Body"].read() == b"old"


def test_upload_to_a_missing_bucket_is_one_sentence(s3, tmp_path):
    local = tmp_path / "a.mp4"
    local.write_bytes(b"abc")
    with pytest.raises(RenderError, match=r"^Could not upload to s3://no-such-bucket/a\.mp4: ") as caught:
        publish(local, "s3://no-such-bucket/a.mp4")
    assert "\n" not in str(caught.value) and not local.exists()


def test_sidecar_text_round_trip(s3):
    url = "s3://lipsync-test/out/clip.mp4.json"
    write_text_atomically(url, '{"ok": true}')
    assert read_text(url) == '{"ok": true}' and exists(url)
    with pytest.raises(AudioError, match="at most 5 are read"):
        read_text(url, max_bytes=5, error=AudioError)
    with pytest.raises(AudioError, match="does not exist"):
        read_text("s3://lipsync-test/nothing.json", error=AudioError)


def test_fetch_to_local_is_bounded_and_atomic(s3, tmp_path):
    s3.put_object(Bucket="lipsync-test", Key="in/voice.wav", Body=b"RIFF" + b"\0" * 96)
    fetched = fetch_to_local("s3://lipsync-test/in/voice.wav", tmp_path / "in")
    assert fetched.read_bytes()[:4] == b"RIFF" and fetched.name.endswith("-voice.wav")
    assert [p.name for p in (tmp_path / "in").iterdir()] == [fetched.name]
    with pytest.raises(AudioError, match="100 bytes; at most 10 are read"):
        fetch_to_local("s3://lipsync-test/in/voice.wav", tmp_path / "small", max_bytes=10, error=AudioError)
    with pytest.raises(AudioError, match=r"s3://lipsync-test/in/none\.wav does not exist"):
        fetch_to_local("s3://lipsync-test/in/none.wav", tmp_path / "in", error=AudioError)
    assert [p.name for p in (tmp_path / "in").iterdir()] == [fetched.name]
    local = tmp_path / "local.wav"
    assert fetch_to_local(str(local), tmp_path / "unused") == local


def test_local_destination_is_renamed_into_place_and_never_replaces_a_folder(tmp_path):
    out = tmp_path / "clip.mp4"
    with staged_output(f"file://{out}") as local:
        assert local.parent == tmp_path and local.name.endswith(".partial.mp4")
        local.write_bytes(b"video")
    assert out.read_bytes() == b"video" and sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4", "staging"]
    folder = tmp_path / "dir.mp4"
    folder.mkdir()
    with pytest.raises(RenderError, match="is a directory; refusing to replace it"):
        with staged_output(str(folder)) as local:
            local.write_bytes(b"video")
    assert folder.is_dir() and not list(tmp_path.glob(".*partial*"))


def test_staging_folders_of_dead_processes_are_swept(staging):
    dead = staging / f"{STAGING_PREFIX}999999999-abc"
    mine = staging / f"{STAGING_PREFIX}{os.getpid()}-abc"
    dead.mkdir()
    mine.mkdir()
    assert sweep_staging() == [dead] and mine.is_dir()


def test_the_server_and_this_process_stay_on_loopback(s3, moto_s3, tmp_path):
    import psutil

    from tests.jobs.cluster_fixtures import non_loopback_sockets

    write_text_atomically("s3://lipsync-test/x.json", "{}")  # connections of this process's s3fs are open now
    server = psutil.Process(moto_s3.process.pid)
    assert non_loopback_sockets([server, *server.children(recursive=True), psutil.Process()]) == []
