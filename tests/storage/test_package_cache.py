"""Packages by URL from a moto S3 server: fetched once, verified, shared, evicted by size, hostile manifests refused."""

import json
import shutil
import threading

import pytest

from lipsync_render.errors import OptionError, PackageError
from lipsync_render.package.loader import load_package
from lipsync_render.storage import fetch_package
from lipsync_render.storage import package_cache as cache
from lipsync_render.synth.avatar import synth_package


@pytest.fixture(scope="module")
def small_package(tmp_path_factory):
    """A valid package of 2 small frames (about 0.3 MB)."""
    return synth_package(tmp_path_factory.mktemp("pkg") / "small", frames=2, size=(256, 192), tiny=True, seed=5)


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv(cache.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.delenv(cache.SIZE_ENV, raising=False)
    return tmp_path / "cache" / "packages"


def upload(folder, prefix, bucket="lipsync-test"):
    import boto3

    s3 = boto3.client("s3")
    for path in folder.rglob("*"):
        if path.is_file():
            s3.upload_file(str(path), bucket, f"{prefix}/{path.relative_to(folder)}")
    return f"s3://{bucket}/{prefix}"


def variant(package, tmp_path, name):
    """A copy whose manifest differs (another name), so another checksum and cache entry."""
    copy = shutil.copytree(package, tmp_path / name)
    manifest = json.loads((copy / "package.json").read_text())
    manifest["name"] = name
    (copy / "package.json").write_text(json.dumps(manifest))
    return copy


def entries(cache_dir):
    return sorted(p.name for p in cache_dir.iterdir() if p.is_dir())


def test_fetched_once_verified_and_reused(s3_bucket, small_package, cache_dir, monkeypatch):
    url = upload(small_package, "pkgs/small")
    installs = []
    real_install = cache._install
    monkeypatch.setattr(cache, "_install", lambda *a: installs.append(1) or real_install(*a))
    with fetch_package(url) as lease:
        package = load_package(lease.path)
        assert package.checksum == lease.checksum and lease.path == cache_dir / lease.checksum
    leases = []
    threads = [threading.Thread(target=lambda: leases.append(fetch_package(url + "/"))) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(installs) == 1 and {lease.path for lease in leases} == {package.root}
    for lease in leases:
        lease.close()
    assert entries(cache_dir) == [package.checksum]


def test_concurrent_first_fetches_download_once(s3_bucket, small_package, cache_dir, monkeypatch):
    url = upload(small_package, "pkgs/small")
    installs = []
    real_install = cache._install
    monkeypatch.setattr(cache, "_install", lambda *a: installs.append(1) or real_install(*a))
    leases = []
    threads = [threading.Thread(target=lambda: leases.append(fetch_package(url))) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(leases) == 3 and len(installs) == 1
    assert [p.name for p in cache_dir.iterdir() if p.name.startswith(".install")] == []


def test_least_recently_used_is_evicted_but_never_one_in_use(
    s3_bucket, small_package, cache_dir, tmp_path, monkeypatch
):
    size = sum(p.stat().st_size for p in small_package.iterdir())
    monkeypatch.setenv(cache.SIZE_ENV, str(1.5 * size / (1 << 30)))  # room for one package
    urls = [upload(variant(small_package, tmp_path, name), f"pkgs/{name}") for name in ("a", "b", "c")]
    first = fetch_package(urls[0])
    first.close()
    held = fetch_package(urls[1])  # evicts a (unused)
    assert entries(cache_dir) == [held.checksum]
    with fetch_package(urls[2]) as third:  # b is in use: both stay, over the limit, until b is let go
        assert entries(cache_dir) == sorted([held.checksum, third.checksum])
        held.close()
        assert cache.evict(cache_dir, cache.cache_limit_bytes()) == [cache_dir / held.checksum]
    assert entries(cache_dir) == [third.checksum]


def test_a_corrupt_file_is_refused_and_nothing_is_cached(s3_bucket, small_package, cache_dir, tmp_path):
    broken = shutil.copytree(small_package, tmp_path / "broken")
    (broken / "crop_rects.json").write_text((broken / "crop_rects.json").read_text() + " ")
    url = upload(broken, "pkgs/broken")
    with pytest.raises(
        PackageError, match=r"s3://lipsync-test/pkgs/broken/crop_rects\.json does not match its checksum"
    ):
        fetch_package(url)
    assert list(cache_dir.glob("[0-9a-f]*/")) == [] and list(cache_dir.glob(".install*")) == []


@pytest.mark.parametrize(
    ("change", "words"),
    [
        (lambda m: m["files"].update(rects="../../outside.json"), "outside the package"),
        (lambda m: m["files"].update(rects="/etc/passwd"), "outside the package"),
        (lambda m: m["checksums"].pop("unet.onnx"), "no checksum for 'unet.onnx'"),
        (lambda m: m.update(format="other"), "is not a lipsync package manifest"),
    ],
)
def test_hostile_manifests_are_refused_before_downloading(s3_bucket, small_package, cache_dir, tmp_path, change, words):
    copy = shutil.copytree(small_package, tmp_path / "hostile")
    manifest = json.loads((copy / "package.json").read_text())
    change(manifest)
    if manifest["files"]["rects"] != "crop_rects.json":
        manifest["checksums"][manifest["files"]["rects"]] = manifest["checksums"].pop("crop_rects.json")
    (copy / "package.json").write_text(json.dumps(manifest))
    with pytest.raises(PackageError, match=words):
        fetch_package(upload(copy, "pkgs/hostile"))
    assert list(cache_dir.glob("[0-9a-f]*/")) == []


def test_missing_package_and_bad_limit_are_one_sentence(s3_bucket, cache_dir, monkeypatch, tmp_path):
    with pytest.raises(PackageError, match=r"^s3://lipsync-test/none/package\.json does not exist\.$"):
        fetch_package("s3://lipsync-test/none")
    monkeypatch.setenv(cache.SIZE_ENV, "lots")
    with pytest.raises(OptionError, match="LIPSYNC_PACKAGE_CACHE_GB is 'lots'"):
        fetch_package("s3://lipsync-test/none")
    assert fetch_package(str(tmp_path)).path == tmp_path  # a local package is used where it is
