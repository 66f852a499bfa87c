"""benchmarks/ort_gpu_wheel.sh on a small file: split into equal parts under the size limit, joined back bit for
bit, and a missing or altered part refused before anything is installed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

PROJECT_DIR = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="a Linux shell script (GNU split, sha256sum)")

NAME = "onnxruntime_gpu-0.0.0-cp312-cp312-manylinux_2_28_x86_64.whl"


def wheel_script(*args, **env) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", "benchmarks/ort_gpu_wheel.sh", *map(str, args)],
        cwd=PROJECT_DIR,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture
def parts(tmp_path):
    wheel = tmp_path / NAME
    wheel.write_bytes(os.urandom(5 * 1024 * 1024 + 123))
    done = wheel_script("split", wheel, tmp_path / "parts", PART_MIB="2")
    assert done.returncode == 0, done.stderr
    return wheel, tmp_path / "parts"


def test_split_then_join_gives_the_same_file(parts, tmp_path):
    wheel, folder = parts
    pieces = sorted(folder.glob("*.part-*"))
    assert [piece.name[-2:] for piece in pieces] == ["00", "01", "02"]
    assert all(piece.stat().st_size <= 2 * 1024 * 1024 for piece in pieces)
    assert len({piece.stat().st_size for piece in pieces[:-1]}) == 1  # equal parts, the last a little shorter
    manifest = (folder / f"{NAME}.sha256").read_text().splitlines()
    assert len(manifest) == 4 and manifest[0].endswith(f"  {NAME}")
    assert wheel_script("check", folder).returncode == 0
    done = wheel_script("join", folder, tmp_path / "joined")
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "joined" / NAME).read_bytes() == wheel.read_bytes()


def test_a_missing_part_is_named_and_nothing_is_joined(parts, tmp_path):
    _, folder = parts
    (folder / f"{NAME}.part-01").unlink()
    assert wheel_script("check", folder).returncode == 1
    done = wheel_script("join", folder, tmp_path / "joined")
    assert done.returncode == 1 and f"missing  {NAME}.part-01" in done.stderr
    assert not (tmp_path / "joined" / NAME).exists()


def test_an_altered_part_is_refused(parts, tmp_path):
    _, folder = parts
    piece = folder / f"{NAME}.part-02"
    data = bytearray(piece.read_bytes())
    data[10] ^= 1
    piece.write_bytes(bytes(data))
    done = wheel_script("join", folder, tmp_path / "joined")
    assert done.returncode == 1 and "corrupt" in done.stderr and "part-02" in done.stderr
    assert not (tmp_path / "joined" / NAME).exists()


def test_no_manifest_is_exit_2(tmp_path):
    done = wheel_script("join", tmp_path, tmp_path / "joined")
    assert done.returncode == 2 and "no manifest" in done.stderr
