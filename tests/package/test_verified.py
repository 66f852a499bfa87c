"""Verify once, trust while unchanged: what the verified record skips, and everything it must still catch."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lipsync_render import paths
from lipsync_render.cli.app import app
from lipsync_render.errors import OptionError, PackageError
from lipsync_render.package import loader, verified
from lipsync_render.package.loader import load_package, sha256_file

runner = CliRunner()
FAST = ("--precision", "fp32", "--backend", "onnxruntime", "-w", "0", "-q")


@pytest.fixture
def package(tiny_package, tmp_path, monkeypatch) -> Path:
    """A private copy of the tiny package, and private caches (the verified record's included)."""
    monkeypatch.setenv(paths.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv(verified.VERIFY_ENV, raising=False)
    return Path(shutil.copytree(tiny_package, tmp_path / "pkg", ignore=shutil.ignore_patterns("cache")))


@pytest.fixture
def hashed(monkeypatch) -> list[str]:
    """The names of the files the loader hashes."""
    names = []

    def counting(path, *args):
        names.append(Path(path).name)
        return sha256_file(path, *args)

    monkeypatch.setattr(loader, "sha256_file", counting)
    return names


def rewrite_in_place(path: Path) -> None:
    """Change one byte, keeping the size and putting back the access and modification times."""
    before = os.stat(path)
    with open(path, "r+b") as file:
        file.seek(before.st_size - 1)
        last = file.read(1)
        file.seek(before.st_size - 1)
        file.write(bytes([last[0] ^ 0xFF]))
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = os.stat(path)
    assert (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)


def test_a_second_load_hashes_only_the_manifest(package, hashed):
    load_package(package)
    assert sorted(hashed) == sorted(["package.json", *json.loads((package / "package.json").read_text())["checksums"]])
    hashed.clear()
    load_package(package)
    assert hashed == ["package.json"]


def test_full_verification_hashes_everything_on_request(package, hashed, monkeypatch):
    load_package(package)
    hashed.clear()
    monkeypatch.setenv(verified.VERIFY_ENV, "full")
    load_package(package)
    assert "frames.npy" in hashed and "unet.onnx" in hashed
    monkeypatch.setenv(verified.VERIFY_ENV, "sometimes")
    with pytest.raises(OptionError, match="LIPSYNC_VERIFY"):
        load_package(package)


def test_a_frame_file_edited_in_place_with_its_times_restored_is_caught_on_render(package, short_wav, tmp_path):
    assert (
        runner.invoke(
            app, ["render", str(short_wav), "--model", str(package), "-o", str(tmp_path / "a.mp4"), *FAST]
        ).exit_code
        == 0
    )
    rewrite_in_place(package / "frames.npy")
    with pytest.raises(PackageError, match=r"frames\.npy does not match its checksum"):
        load_package(package)
    result = runner.invoke(
        app, ["render", str(short_wav), "--model", str(package), "-o", str(tmp_path / "b.mp4"), *FAST]
    )
    assert result.exit_code == 4 and "frames.npy does not match its checksum" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "b.mp4").exists()


def test_a_changed_manifest_is_caught(package):
    load_package(package)
    data = json.loads((package / "package.json").read_text())
    data["checksums"]["frames.npy"] = "0" * 64
    (package / "package.json").write_text(json.dumps(data))
    with pytest.raises(PackageError, match=r"frames\.npy does not match its checksum"):
        load_package(package)


def test_a_replaced_file_is_caught(package):
    load_package(package)
    data = (package / "crop_rects.json").read_bytes()
    (package / "crop_rects.json").unlink()
    (package / "crop_rects.json").write_bytes(data.replace(b"[", b"[ ", 1))
    with pytest.raises(PackageError, match=r"crop_rects\.json does not match its checksum"):
        load_package(package)


@pytest.mark.parametrize(
    "record",
    [
        "not json",
        "[]",
        '{"version": 1, "files": {"frames.npy": "x"}}',
        "x" * (verified.MAX_RECORD_BYTES + 10),
    ],
)
def test_a_corrupt_record_means_hashing_again(package, hashed, record):
    load_package(package)
    verified.record_path(package).write_text(record)
    hashed.clear()
    load_package(package)
    assert "frames.npy" in hashed
    hashed.clear()
    load_package(package)  # and the record is whole again
    assert hashed == ["package.json"]


def test_a_record_never_vouches_for_another_file_or_package(package, tmp_path, hashed):
    load_package(package)
    path = verified.record_path(package)
    record = json.loads(path.read_text())
    record["files"]["../elsewhere.npy"] = record["files"]["frames.npy"]
    other = Path(shutil.copytree(package, tmp_path / "other"))
    verified.record_path(other).write_text(json.dumps(record))  # names the first package's path
    hashed.clear()
    load_package(other)
    assert "frames.npy" in hashed
    assert "../elsewhere.npy" not in json.loads(verified.record_path(other).read_text())["files"]


def test_an_unwritable_record_folder_only_costs_hashing(package, tmp_path, monkeypatch, hashed):
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where the cache folder would be")
    monkeypatch.setenv(paths.CACHE_ENV, str(blocker))
    load_package(package)
    hashed.clear()
    load_package(package)
    assert "frames.npy" in hashed


@contextlib.contextmanager
def read_only(path: Path):
    """The package read-only in a way root respects too (the immutable attribute), else by its modes."""
    if os.geteuid() == 0:
        if shutil.which("chattr") is None or subprocess.run(["chattr", "-R", "+i", str(path)]).returncode:
            pytest.skip("read-only as root needs chattr +i on this file system")
        try:
            yield
        finally:
            subprocess.run(["chattr", "-R", "-i", str(path)], check=True)
    else:
        modes = {p: p.stat().st_mode for p in [path, *path.rglob("*")]}
        for p in modes:
            p.chmod(modes[p] & ~0o222)
        try:
            yield
        finally:
            for p, mode in modes.items():
                p.chmod(mode)


def test_a_read_only_package_renders_and_validates(package, short_wav, tmp_path, hashed):
    with read_only(package):
        with pytest.raises(OSError):
            (package / "probe").write_text("x")
        for name in ("a", "b"):
            result = runner.invoke(
                app, ["render", str(short_wav), "--model", str(package), "-o", str(tmp_path / f"{name}.mp4"), *FAST]
            )
            assert result.exit_code == 0, result.stderr
        assert hashed.count("frames.npy") == 1  # the second render trusted the record in the user's cache
        result = runner.invoke(app, ["package", "validate", str(package)])
        assert result.exit_code == 0, result.stderr
        assert hashed.count("frames.npy") == 2  # validate always hashes in full


def test_two_concurrent_first_renders_of_one_package_both_succeed(package, short_wav, tmp_path):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    commands = [
        [
            sys.executable,
            "-m",
            "lipsync_render",
            "render",
            str(short_wav),
            "--model",
            str(package),
            "-o",
            str(tmp_path / f"{n}.mp4"),
            *FAST,
        ]
        for n in ("a", "b")
    ]
    processes = [
        subprocess.Popen(c, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for c in commands
    ]
    outcomes = [(p.wait(timeout=300), p.stderr.read()) for p in processes]
    assert [code for code, _ in outcomes] == [0, 0], outcomes
    assert (tmp_path / "a.mp4").stat().st_size > 0 and (tmp_path / "b.mp4").stat().st_size > 0
    record = json.loads(verified.record_path(package).read_text())
    assert "frames.npy" in record["files"]
    assert not [p for p in verified.records_dir().iterdir() if p.name.endswith(".tmp")]
