"""Hostile input, second sweep (issue 24), the models and packages: what validate passes, render must not trip over;
memory bombs by model shape refused before they run; caches contained; an explicit backend kept; stderr holds our
sentences only. Each case runs the real command and asserts the exit code, one sentence, no traceback or library
warning, and the package unchanged."""

import hashlib
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hostile_models import (
    bomb_unet,
    corrupt_tile_scan,
    edit_manifest,
    external_weights,
    fixed_batch_unet,
    infinite_unet,
    lying_unet,
    opset_99_unet,
    png_tile,
)
from typer.testing import CliRunner

from lipsync_render.cli.app import app

runner = CliRunner()
LIBRARY_NOISE = ("Traceback", "Warning:", "RuntimeWarning", "UserWarning")


def tree_digest(folder: Path) -> dict[str, str]:
    """Every file of a package but its cache, by content: the package must come out unchanged."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and "cache" not in p.relative_to(folder).parts
    }


def lipsync(*args, limit_bytes: int | None = None, timeout: float = 300, env=None) -> subprocess.CompletedProcess:
    """The real command in a process of its own, optionally under an address-space limit."""

    def limit():
        if limit_bytes:
            resource.setrlimit(resource.RLIMIT_AS, (limit_bytes, limit_bytes))

    return subprocess.run(
        [sys.executable, "-m", "lipsync_render", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        preexec_fn=limit,
        env={**os.environ, **(env or {})},
    )


def assert_one_sentence(result, code: int, *fragments: str) -> None:
    stderr = result.stderr
    assert result.returncode == code, stderr
    lines = [line for line in stderr.splitlines() if line.strip() and not line.startswith("problem:")]
    assert len(lines) == 1 and lines[0].startswith("error:"), stderr
    assert all(f in stderr for f in fragments), stderr
    assert not any(noise in stderr for noise in LIBRARY_NOISE), stderr  # every line is ours (counted above)


@pytest.fixture
def package(tiny_package, tmp_path) -> Path:
    return Path(shutil.copytree(tiny_package, tmp_path / "pkg"))


@pytest.fixture(scope="session")
def tiny_jpeg(tmp_path_factory) -> Path:
    from lipsync_render.store_choice import parse_frames_store
    from lipsync_render.synth.avatar import synth_package

    folder = tmp_path_factory.mktemp("jpeg") / "tiny_jpeg"
    return synth_package(folder, frames=12, tiny=True, seed=3, frames_store=parse_frames_store("jpeg"))


@pytest.fixture
def jpeg_package(tiny_jpeg, tmp_path) -> Path:
    return Path(shutil.copytree(tiny_jpeg, tmp_path / "pkg_jpeg"))


# --- class 5: what validate passes, render must not trip over -------------------------------------------------


def test_in_package_external_weights_render_under_precision_auto(package, short_wav, tmp_path):
    external_weights(package)
    before = tree_digest(package)
    assert lipsync("package", "validate", package).returncode == 0
    result = lipsync("render", short_wav, "--model", package, "-o", tmp_path / "x.mp4", "-w", "0", "-q")
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    assert result.stderr == "", result.stderr  # no library line from quantising to int8
    assert list((package / "cache").glob("unet.int8.*.onnx")), "the int8 variant was built with the weights"
    assert tree_digest(package) == before


def test_a_fixed_batch_of_one_is_planned_with(package, short_wav, tmp_path):
    fixed_batch_unet(package)
    assert lipsync("package", "validate", package).returncode == 0
    result = lipsync("render", short_wav, "--model", package, "-o", tmp_path / "x.mp4", "-w", "0", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.splitlines()[0])["plan"]["batch_size"] == 1
    result = lipsync("render", short_wav, "--model", package, "-o", tmp_path / "y.mp4", "-b", "4")
    assert_one_sentence(result, 2, "takes batches of exactly 1")
    result = lipsync(
        "render", short_wav, "--model", package, "-o", tmp_path / "z.mp4", "--backend", "openvino", "-w", "0", "-q"
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    "make, fragment",
    [(lying_unet, "(160) vs (320)"), (opset_99_unet, "uses ONNX opset 99")],
    ids=["static output shape lies", "opset 99"],
)
def test_a_model_validate_would_pass_is_a_package_problem(make, fragment, package, short_wav, tmp_path):
    make(package)
    result = lipsync("package", "validate", package)
    assert_one_sentence(result, 4, fragment)
    for precision in ("auto", "fp32"):
        result = lipsync("render", short_wav, "--model", package, "-o", tmp_path / "x.mp4", "--precision", precision)
        assert_one_sentence(result, 4, fragment)
    assert not (tmp_path / "x.mp4").exists()


@pytest.mark.parametrize("damage, fragment", [(corrupt_tile_scan, "damaged JPEG"), (png_tile, "not a JPEG image")])
def test_a_bad_jpeg_tile_is_a_package_problem(damage, fragment, jpeg_package, short_wav, tmp_path):
    damage(jpeg_package)
    result = lipsync("package", "validate", jpeg_package)
    assert_one_sentence(result, 4, fragment)
    for workers in ("0", "2"):
        result = lipsync("render", short_wav, "--model", jpeg_package, "-o", tmp_path / "x.mp4", "-w", workers)
        assert_one_sentence(result, 4, fragment)
        assert not [p for p in tmp_path.iterdir() if p.suffix == ".mp4" or "partial" in p.name]


# --- class 3: memory bombs by model shape ---------------------------------------------------------------------

AS_LIMIT = 4 << 30  # the bombs ask for 10.8 GB and 80 GB; a sentence must come well before either


def test_a_symbolic_output_bomb_is_refused_unrun_under_a_memory_limit(package, short_wav, tmp_path):
    bomb_unet(package)
    result = lipsync("package", "validate", package, limit_bytes=AS_LIMIT)
    assert_one_sentence(result, 4, "needs 10.8 GB for one sample")
    result = lipsync("render", short_wav, "--model", package, "-o", tmp_path / "x.mp4", limit_bytes=AS_LIMIT)
    assert_one_sentence(result, 4, "gives shape [1, 3, 320, 2812480]")


def test_a_batch_beyond_the_devices_memory_is_refused_by_estimate(tmp_path_factory, short_wav, tmp_path):
    from lipsync_render.synth.avatar import synth_package

    full = synth_package(tmp_path_factory.mktemp("full") / "full", frames=2, size=(640, 360), seed=1)
    result = lipsync(
        "render", short_wav, "--model", full, "-o", tmp_path / "x.mp4", "-b", "256", "--precision", "fp32",
        limit_bytes=AS_LIMIT,
    )  # fmt: skip
    if result.returncode == 0:
        pytest.skip("this machine holds a batch of 256 of the full UNet")
    assert_one_sentence(result, 5, "Batch size 256 needs about", "enough for a batch of at most")


def test_the_automatic_batch_is_what_the_memory_holds():
    from lipsync_render.model_shapes import batch_memory_problem, max_batch

    assert max_batch(300 << 20, 10 << 30) == 27
    assert max_batch(0, 10 << 30) is None
    assert "at most 27" in batch_memory_problem("UNet", 300 << 20, 64, 10 << 30, "this machine")
    assert "per sample" in batch_memory_problem("UNet", 20 << 30, 1, 10 << 30, "GPU 0")


# --- class 2: caches derived from package content are contained ------------------------------------------------


@pytest.mark.parametrize("name", ["ABSOLUTE", "../../escaped", "..", "a/../../b"])
def test_a_read_only_packages_cache_stays_in_the_user_cache(name, package, short_wav, tmp_path):
    target = tmp_path / "planted"
    edit_manifest(package, lambda data: data.update(name=str(target) if name == "ABSOLUTE" else name))
    edit_manifest(package, lambda data: data.pop("checksums"))
    shutil.rmtree(package / "cache", ignore_errors=True)
    (package / "cache").write_text("a file where the cache folder would go: the package's own cache is unusable")
    user_cache = tmp_path / "xdg"
    before = sorted(p for p in tmp_path.rglob("*") if user_cache not in p.parents)
    result = lipsync(
        "render", short_wav, "--model", package, "-o", tmp_path / "out.mp4", "-w", "0", "-q",
        "--precision", "auto", env={"XDG_CACHE_HOME": str(user_cache)},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    after = sorted(p for p in tmp_path.rglob("*") if user_cache not in p.parents and p != user_cache)
    assert after == sorted([*before, tmp_path / "out.mp4"]), "nothing written outside the output and the cache"
    ours = [p for p in user_cache.rglob("*") if p.is_file() and "Microsoft" not in p.parts]  # ORT's own device id
    written = ours
    assert any(p.name == "precision-auto.json" for p in written)
    assert all((user_cache / "lipsync-render") in p.parents for p in written)


# --- class 7 and 8: explicit options kept, stderr our sentences only -------------------------------------------


def test_an_explicit_backend_is_never_overridden(package, short_wav, tmp_path):
    result = lipsync(
        "render", short_wav, "--model", package, "-o", tmp_path / "x.mp4", "--backend", "openvino", "-w", "0", "--json"
    )
    assert result.returncode == 0, result.stderr
    record = json.loads(result.stdout.splitlines()[0])
    assert record["backend"] == "openvino" and record["plan"]["backend"] == "openvino", record


def test_an_infinite_output_is_one_sentence_without_a_numpy_warning(package, short_wav, tmp_path):
    infinite_unet(package)
    result = lipsync("render", short_wav, "--model", package, "-o", tmp_path / "x.mp4", "-w", "0", "-q")
    assert_one_sentence(result, 1, "produced NaN or infinite values")
    assert "RuntimeWarning" not in result.stderr


def test_library_warnings_are_silenced_in_commands():
    result = runner.invoke(app, ["package", "validate", "/nonexistent/package"])
    assert result.exit_code == 4 and "Warning" not in result.stderr


def test_a_killed_resource_tracker_prints_nothing(package, tmp_path):
    import numpy as np
    import psutil
    import soundfile as sf

    wav = tmp_path / "long.wav"
    sf.write(wav, (0.1 * np.random.default_rng(0).standard_normal(16000 * 20)).astype(np.float32), 16000)
    command = ["render", wav, "--model", package, "-o", tmp_path / "x.mp4", "-w", "2", "-q"]
    process = subprocess.Popen(
        [sys.executable, "-m", "lipsync_render", *map(str, command)], stderr=subprocess.PIPE, text=True
    )
    killed = None
    deadline = time.monotonic() + 60
    while killed is None and time.monotonic() < deadline and process.poll() is None:
        for child in psutil.Process(process.pid).children(recursive=True):
            try:
                if "resource_tracker" in " ".join(child.cmdline()):
                    time.sleep(1.0)
                    child.kill()
                    killed = child.pid
            except psutil.Error:
                continue
        time.sleep(0.1)
    _, stderr = process.communicate(timeout=300)
    assert killed is not None, "the render started a resource tracker"
    assert process.returncode == 0 and stderr == "", stderr
