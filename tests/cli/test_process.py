"""The `lipsync` process itself: what it imports to render, its BLAS threads, and how it ends."""

import json
import os
import subprocess
import sys

import pytest

pytest.importorskip("openvino")

AT_EXIT = """
import atexit, json, sys
def report():  # runs in the CLI's own exit, after the command; printed without a flush of its own
    converter = sys.modules.get("openvino.tools.ovc")
    print(json.dumps({"onnxruntime": "onnxruntime" in sys.modules, "converter": converter is not None}))
atexit.register(report)
from lipsync_render.cli import main
sys.argv = ["lipsync", *sys.argv[1:]]
main()
"""


def run_cli(*args):
    command = [sys.executable, "-c", AT_EXIT, *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, timeout=300)


def test_a_render_on_openvino_imports_neither_onnx_runtime_nor_the_converter(tiny_package, short_wav, tmp_path):
    out = tmp_path / "out.mp4"
    options = ["--backend", "openvino", "--precision", "fp32", "--json", "-q"]  # fp32: nothing to measure first
    result = run_cli("render", short_wav, "--model", tiny_package, "-o", out, *options)
    assert result.returncode == 0, result.stderr
    rendered, imported = (json.loads(line) for line in result.stdout.splitlines())
    assert rendered["status"] == "ok" and out.is_file()
    assert imported == {"onnxruntime": False, "converter": False}  # atexit ran, and its output was flushed


def test_the_exit_code_and_the_sentence_survive_the_quick_exit(tiny_package, tmp_path):
    missing = tmp_path / "missing.wav"
    result = run_cli("render", missing, "--model", tiny_package, "-o", tmp_path / "o.mp4", "--precision", "fp32", "-q")
    assert result.returncode == 1
    assert "does not exist" in result.stderr and "Traceback" not in result.stderr
    assert set(json.loads(result.stdout.splitlines()[-1])) == {"onnxruntime", "converter"}  # atexit ran, flushed
    result = run_cli("render", "--no-such-flag")
    assert result.returncode == 2 and result.stderr.startswith("error: no such option")


@pytest.mark.parametrize(("given", "expected"), [(None, "1"), ("3", "3")])
def test_the_cli_keeps_numpy_blas_to_one_thread_unless_told(given, expected):
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"}
    if given is not None:
        env["OPENBLAS_NUM_THREADS"] = given
    script = "import os, lipsync_render.cli, numpy; print(os.environ['OPENBLAS_NUM_THREADS'])"
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=60)
    assert result.stdout.strip() == expected, result.stderr
