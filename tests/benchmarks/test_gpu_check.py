"""The device check's CPU dry run: every step of benchmarks/gpu_check.sh that a CPU can run passes, and the steps
that need torch, CUDA or onnxruntime-gpu are skipped with the reason, so the script cannot rot between the rare
sessions that are lent a GPU (it did once: the CLI's --json/--markdown became --save)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

PROJECT_DIR = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="the device check is a Linux shell script")

NEEDS = {"torch", "cuda", "ort-cuda", "ort-tensorrt"}
ORT_GPU_STEPS = {"bench-ort-cuda-fp32", "render-ort-cuda-fp32", "bench-ort-cuda-fp16", "bench-ort-tensorrt-fp16"}
CPU_STEPS = {"versions", "doctor", "host-ceiling", "speech", "bench-ort-cpu-fp32", "render-ort-cpu-fp32"}


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("gpu-check")
    env = {
        **os.environ,
        "GPU_CHECK_DEVICE": "cpu",
        "GPU_CHECK_INSTALL": "0",
        "GPU_CHECK_VENV": sys.prefix,
        "GPU_CHECK_PYTHON": sys.executable,
        "GPU_CHECK_WORK": str(tmp / "work"),
        "OUT": str(tmp / "out"),
    }
    done = subprocess.run(
        ["bash", "benchmarks/gpu_check.sh"], cwd=PROJECT_DIR, env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return tmp / "out", done


def test_every_step_a_cpu_can_run_passes_and_the_others_say_why_they_were_skipped(dry_run):
    out, _ = dry_run
    summary = json.loads((out / "summary.json").read_text())
    steps = {step["name"]: step for step in summary["steps"]}
    assert steps.keys() >= CPU_STEPS | ORT_GPU_STEPS, sorted(steps)
    for name, step in steps.items():
        log = (out / step["log"]).read_text()[-1500:] if (out / step["log"]).exists() else ""
        assert step["status"] in ("ok", "skipped"), f"{name}: {step['reason']}\n{log}"
        if step["status"] == "skipped":
            assert step["needs"] in NEEDS and step["reason"], step
    assert summary["counts"]["failed"] == 0


def test_the_summary_table_holds_the_results_and_the_skipped_gpu_rows(dry_run):
    out, done = dry_run
    table = (out / "summary.md").read_text()
    assert table in done.stdout  # printed as written
    rows = json.loads((out / "summary.json").read_text())["rows"]
    runs = {(row["backend"], row["device"], row["run"].split()[0]) for row in rows}
    assert {("onnxruntime", "cpu", "bench"), ("onnxruntime", "cpu", "render"), ("stand-in", "cpu", "host")} <= runs
    render = next(row for row in rows if row["run"].startswith("render"))
    assert render["fps"] > 0 and render["batch"] == "25" and render["busiest_thread"]
    for name in ORT_GPU_STEPS:
        assert f"| {name} | skipped: " in table
