"""The `lipsync` command: each bad input gives one sentence on stderr, a non-zero exit and no output file."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from lipsync_render.cli.app import app

runner = CliRunner()


def render(*args):
    return runner.invoke(app, ["render", *map(str, args)])


def assert_clean_failure(result, fragment, out_dir, code=None):
    assert result.exit_code != 0 and (code is None or result.exit_code == code), result.output
    assert fragment in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert not list(out_dir.glob("*.mp4")), "no output file may be left behind"


def test_help_lists_commands():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("render", "features", "package"):
        assert command in result.stdout


def test_render_json_and_summary(tiny_package, short_wav, tmp_path):
    result = render(short_wav, "--model", tiny_package, "-o", tmp_path / "a.mp4", "--json", "-b", "8", "-w", "0")
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout.strip().splitlines()[-1])
    assert record["status"] == "ok" and record["frames"] == 33 and record["output"].endswith("a.mp4")
    assert set(record["seconds"]) >= {"audio", "inference", "compositing", "encoding", "total"}
    assert "33 frames" in result.stderr and "x real time" in result.stderr


@pytest.mark.parametrize("kind", ["missing", "empty", "zero_samples", "not_audio", "nan", "truncated_header"])
def test_bad_audio(kind, tiny_package, tmp_path):
    path = tmp_path / f"{kind}.wav"
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "zero_samples":
        sf.write(path, np.zeros(0, np.int16), 16000)
    elif kind == "not_audio":
        path.write_text("this is not audio\n" * 20)
    elif kind == "nan":
        sf.write(path, np.array([0.1, np.nan, 0.2] * 1000, np.float32), 16000, subtype="FLOAT")
    elif kind == "truncated_header":
        sf.write(tmp_path / "ok.wav", np.zeros(16000, np.int16), 16000)
        path.write_bytes((tmp_path / "ok.wav").read_bytes()[:20])
    out = tmp_path / "out"
    out.mkdir()
    result = render(path, "--model", tiny_package, "--out-dir", out, "-w", "0")
    assert_clean_failure(result, path.name, out)


def test_unknown_model(short_wav, tmp_path):
    result = render(short_wav, "--model", "no-such-model", "-o", tmp_path / "x.mp4")
    assert_clean_failure(result, "Unknown model 'no-such-model'", tmp_path, code=4)


def test_broken_package(tiny_package, short_wav, tmp_path):
    import shutil

    broken = shutil.copytree(tiny_package, tmp_path / "broken")
    (broken / "audio_encoder.onnx").unlink()
    result = render(short_wav, "--model", broken, "-o", tmp_path / "x.mp4")
    assert_clean_failure(result, "audio_encoder.onnx is missing", tmp_path, code=4)


def test_output_directory_missing(tiny_package, short_wav, tmp_path):
    result = render(short_wav, "--model", tiny_package, "-o", tmp_path / "missing" / "x.mp4", "-w", "0")
    assert_clean_failure(result, "does not exist", tmp_path)


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write to read-only directories")
def test_output_directory_not_writable(tiny_package, short_wav, tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    result = render(short_wav, "--model", tiny_package, "-o", locked / "x.mp4", "-w", "0")
    assert_clean_failure(result, "not writable", locked)


def test_output_not_writable_even_as_root(tiny_package, short_wav, tmp_path):
    if not os.path.isdir("/sys/kernel"):
        pytest.skip("needs sysfs")
    result = render(short_wav, "--model", tiny_package, "-o", "/sys/kernel/x.mp4", "-w", "0")
    # Root passes the up-front access check and fails at the write; anyone else fails the check.
    expected = "Could not write" if os.access("/sys/kernel", os.W_OK) else "is not writable"
    assert_clean_failure(result, expected, tmp_path)
    assert "/sys/kernel" in result.stderr


def test_batch_size_below_one(tiny_package, short_wav, tmp_path):
    result = render(short_wav, "--model", tiny_package, "-o", tmp_path / "x.mp4", "--batch-size", "0")
    assert_clean_failure(result, "Batch size must be at least 1", tmp_path, code=2)


def test_unknown_device(tiny_package, short_wav, tmp_path):
    result = render(short_wav, "--model", tiny_package, "-o", tmp_path / "x.mp4", "--device", "gpu7")
    assert_clean_failure(result, "Unknown device 'gpu7'", tmp_path, code=2)


def test_bad_file_does_not_stop_the_others(tiny_package, short_wav, tmp_path):
    bad = tmp_path / "bad.wav"
    bad.write_text("nope")
    out = tmp_path / "out"
    out.mkdir()
    result = render(bad, short_wav, "--model", tiny_package, "--out-dir", out, "--json", "-w", "0")
    assert result.exit_code == 1
    statuses = [json.loads(line)["status"] for line in result.stdout.strip().splitlines()]
    assert statuses == ["error", "ok"]
    assert (out / "short.mp4").exists() and "1 rendered, 1 failed" in result.stderr

    result = render(bad, short_wav, "--model", tiny_package, "--out-dir", tmp_path, "--fail-fast", "-w", "0")
    assert result.exit_code == 1 and not (tmp_path / "short.mp4").exists()


@pytest.mark.parametrize("cached_choice", [True, False])
def test_ctrl_c_leaves_no_output(tiny_package, tmp_path, cached_choice):
    """SIGINT mid-render: exit 130, one line on stderr, no output or partial file, no hang; also right after
    --precision auto measured its candidates in the process (OpenVINO's threads once crashed on the signal)."""
    if not cached_choice:
        tiny_package = shutil.copytree(tiny_package, tmp_path / "fresh", ignore=shutil.ignore_patterns("cache"))
    long_wav = tmp_path / "long.wav"
    rng = np.random.default_rng(0)
    sf.write(long_wav, (0.1 * rng.standard_normal(16000 * 120)).astype(np.float32), 16000)
    out = tmp_path / "out"
    out.mkdir()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "lipsync_render",
            "render",
            str(long_wav),
            "--model",
            str(tiny_package),
            "--out-dir",
            str(out),
            "--quiet",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while not list(out.glob(".*partial*")) and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.05)
    time.sleep(0.5)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert stderr.strip() == "error: interrupted.", stderr
    assert list(out.iterdir()) == []


def test_features_command_writes_table_and_mel(tiny_package, short_wav, tmp_path):
    from lipsync_render.media.features import encoder_window_count

    result = runner.invoke(
        app,
        [
            "features",
            str(short_wav),
            "--model",
            str(tiny_package),
            "-o",
            str(tmp_path / "f.npy"),
            "--mel",
            str(tmp_path / "m.npy"),
        ],
    )
    assert result.exit_code == 0, result.output
    mel, table = np.load(tmp_path / "m.npy"), np.load(tmp_path / "f.npy")
    assert mel.shape == (1 + 20800 // 200, 80)
    assert table.shape == (encoder_window_count(len(mel)) + 2, 512)
    assert np.array_equal(table[0], table[1]) and np.array_equal(table[-1], table[-2])


def test_synth_command_makes_a_valid_package(tmp_path):
    result = runner.invoke(
        app, ["package", "synth", "small", "--tiny", "--frames", "3", "--size", "640x360", "--out-dir", str(tmp_path)]
    )
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["package", "validate", str(tmp_path / "small")])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["package", "synth", "bad", "--size", "big", "--out-dir", str(tmp_path)])
    assert result.exit_code == 2 and "size must look like" in result.stderr
    result = runner.invoke(app, ["package", "synth", "odd", "--size", "641x360", "--out-dir", str(tmp_path)])
    assert result.exit_code == 2 and "needs an even width and height" in result.stderr
    assert not (tmp_path / "odd").exists()
