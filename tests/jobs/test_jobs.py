"""render-many: manifests, sidecars, resuming a killed run, re-rendering what changed, Ray parity."""

import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from lipsync_render.cli.app import app
from lipsync_render.errors import LipsyncError
from lipsync_render.jobs import read_jobs, run_jobs
from lipsync_render.jobs import worker as jobs_module
from lipsync_render.jobs.ray_runner import import_ray
from lipsync_render.jobs.sidecar import sidecar_path
from lipsync_render.media.video import probe, read_frames_bgr

EXAMPLES_DIR = Path(__file__).resolve().parents[2] / "examples"
runner = CliRunner()
CLIP_SECONDS = (0.4, 0.6, 0.8, 1.0)


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """Short WAVs cut from the example speech at different lengths and offsets: {seconds: path}."""
    samples, rate = sf.read(EXAMPLES_DIR / "hello.wav", dtype="int16")
    folder = tmp_path_factory.mktemp("clips")
    paths = {}
    for i, seconds in enumerate(CLIP_SECONDS):
        paths[seconds] = folder / f"clip{i}.wav"
        sf.write(paths[seconds], samples[int(i * 0.5 * rate) : int((i * 0.5 + seconds) * rate)], rate)
    return paths


def write_csv(path, rows, columns=("audio", "model", "output", "workers", "batch_size")):
    lines = [",".join(columns)] + [",".join(str(row.get(c, "")) for c in columns) for row in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def expected_frames(audio):
    info = sf.info(audio)
    return math.ceil(info.frames / info.samplerate * 25)


def test_killed_run_resumes_with_only_the_rest(tiny_package, clips, tmp_path):
    """SIGKILL a 20-job run part-way; the rerun with --skip-existing renders exactly the jobs without a sidecar."""
    out = tmp_path / "out"
    rows = [
        {
            "audio": clips[CLIP_SECONDS[i % 4]],
            "model": tiny_package,
            "output": f"out/job{i:02}.mp4",
            "workers": 0,
            "batch_size": 8,
        }
        for i in range(20)
    ]
    manifest = write_csv(tmp_path / "jobs.csv", rows)
    process = subprocess.Popen(
        [sys.executable, "-m", "lipsync_render", "render-many", str(manifest), "--quiet"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    deadline = time.monotonic() + 90
    while len(list(out.glob("*.mp4.json"))) < 6 and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
    finished = {p.name.removesuffix(".json") for p in out.glob("*.mp4.json")}
    assert 0 < len(finished) < 20, f"kill landed at {len(finished)} finished jobs"
    # A partial file of the killed process, as a kill mid-encode leaves one.
    stale = out / f".job19.{process.pid}.partial.mp4"
    stale.write_bytes(b"\0" * 1000)

    results = run_jobs(read_jobs(manifest), skip_existing=True)

    statuses = {r.output.rsplit("/", 1)[1]: r.status for r in results}
    assert len(results) == 20
    assert {name for name, status in statuses.items() if status == "skipped"} == finished
    assert sum(status == "ok" for status in statuses.values()) == 20 - len(finished)
    assert not stale.exists() and not list(out.glob(".*")), "leftovers of the killed run are cleaned up"
    for i, row in enumerate(rows):
        info = probe(out / f"job{i:02}.mp4")
        assert info.frames == expected_frames(row["audio"]) and info.audio_codec == "aac"
        record = json.loads(sidecar_path(out / f"job{i:02}.mp4").read_text())
        assert record["status"] == "ok" and record["frames"] == info.frames

    again = run_jobs(read_jobs(manifest), skip_existing=True)
    assert [r.status for r in again] == ["skipped"] * 20
    assert again[0].frames == expected_frames(rows[0]["audio"])


def test_changed_input_option_or_version_re_renders(tiny_package, clips, tmp_path, monkeypatch):
    loads = []
    real_renderer = jobs_module.Renderer
    monkeypatch.setattr(jobs_module, "Renderer", lambda *a, **k: loads.append(a) or real_renderer(*a, **k))
    columns = ("audio", "model", "output", "workers", "batch_size", "crf")
    own_input = shutil.copy(clips[0.4], tmp_path / "own.wav")
    rows = [
        {"audio": clips[0.4], "model": tiny_package, "output": f"{name}.mp4", "workers": 0, "batch_size": 8}
        for name in "abcde"
    ]
    rows[3]["audio"] = own_input
    rows[4]["crf"] = 23  # a per-render option: the same loaded renderer serves it
    manifest = write_csv(tmp_path / "jobs.csv", rows, columns)
    assert [r.status for r in run_jobs(read_jobs(manifest), skip_existing=True)] == ["ok"] * 5
    assert len(loads) == 1, "one package and session load for jobs that only differ in per-render options"

    rows[0]["batch_size"] = 4  # speed only: the output stays valid
    sidecar_path(tmp_path / "b.mp4").unlink()
    rows[2]["crf"] = 30
    sf.write(own_input, np.zeros(8000, np.int16), 16000)
    record = json.loads(sidecar_path(tmp_path / "e.mp4").read_text())
    sidecar_path(tmp_path / "e.mp4").write_text(json.dumps({**record, "version": "0.0.1"}))
    write_csv(manifest, rows, columns)

    results = run_jobs(read_jobs(manifest), skip_existing=True)
    assert [r.status for r in results] == ["skipped", "ok", "ok", "ok", "ok"]
    assert json.loads(sidecar_path(tmp_path / "c.mp4").read_text())["options"]["crf"] == 30
    assert [r.status for r in run_jobs(read_jobs(manifest))] == ["ok"] * 5, "without --skip-existing all re-render"


def test_sidecar_records_blend_and_silence_and_a_change_re_renders(tiny_package, clips, tmp_path):
    columns = ("audio", "model", "output", "workers", "blend", "silence")
    rows = [{"audio": clips[0.4], "model": tiny_package, "output": "a.mp4", "workers": 0, "blend": "feather:8"}]
    rows[0]["silence"] = "idle"
    manifest = write_csv(tmp_path / "jobs.csv", rows, columns)
    assert [r.status for r in run_jobs(read_jobs(manifest), skip_existing=True)] == ["ok"]
    options = json.loads(sidecar_path(tmp_path / "a.mp4").read_text())["options"]
    assert (options["blend"], options["silence"]) == ("feather:8", "idle")
    assert [r.status for r in run_jobs(read_jobs(manifest), skip_existing=True)] == ["skipped"]
    for column, value in (("silence", "keep"), ("blend", "hard")):
        rows[0][column] = value
        write_csv(manifest, rows, columns)
        assert [r.status for r in run_jobs(read_jobs(manifest), skip_existing=True)] == ["ok"], column


def test_jsonl_with_out_dir_json_and_a_failing_job(tiny_package, clips, tmp_path):
    manifest = tmp_path / "jobs.jsonl"
    rows = [
        {"audio": str(clips[0.4]), "model": str(tiny_package), "workers": 0, "start_frame": 5},
        {"audio": "missing.wav", "model": str(tiny_package), "workers": 0},
        {"audio": str(clips[0.6]), "model": str(tiny_package), "workers": 0, "loop": "forward"},
    ]
    manifest.write_text("\n".join(json.dumps(row) for row in rows) + "\n\n")
    result = runner.invoke(app, ["render-many", str(manifest), "--out-dir", str(tmp_path / "renders"), "--json"])
    assert result.exit_code == 1, result.output
    records = [json.loads(line) for line in result.stdout.strip().splitlines()]
    assert [r["status"] for r in records] == ["ok", "error", "ok"]
    assert "missing.wav" in records[1]["error"] and records[1]["job"].endswith("jobs.jsonl, line 2")
    assert "2 rendered, 0 skipped, 1 failed" in result.stderr and "Traceback" not in result.stderr
    for record, row in zip(records[::2], rows[::2]):
        assert record["output"] == str(tmp_path / "renders" / f"{os.path.basename(row['audio'])[:-4]}.mp4")
        assert json.loads(sidecar_path(tmp_path / "renders" / os.path.basename(record["output"])).read_text())[
            "options"
        ]["start_frame"] == row.get("start_frame", 0)


def test_fail_fast_starts_no_job_after_a_failure(tiny_package, clips, tmp_path):
    manifest = write_csv(
        tmp_path / "jobs.csv",
        [
            {"audio": "nope.wav", "model": tiny_package, "output": "a.mp4", "workers": 0},
            {"audio": clips[0.4], "model": tiny_package, "output": "b.mp4", "workers": 0},
        ],
    )
    result = runner.invoke(app, ["render-many", str(manifest), "--fail-fast"])
    assert result.exit_code == 1 and "1 not run" in result.stderr, result.output
    assert not (tmp_path / "b.mp4").exists()


def test_unknown_package_fails_its_jobs_only(tiny_package, clips, tmp_path):
    manifest = write_csv(
        tmp_path / "jobs.csv",
        [
            {"audio": clips[0.4], "model": "no-such-model", "output": "a.mp4", "workers": 0},
            {"audio": clips[0.4], "model": tiny_package, "output": "b.mp4", "workers": 0},
        ],
    )
    results = run_jobs(read_jobs(manifest))
    assert [r.status for r in results] == ["error", "ok"] and "Unknown model 'no-such-model'" in results[0].error


MALFORMED = {
    "unknown column": ("jobs.csv", "audio,model,output,crff\na.wav,tiny,a.mp4,18\n", "line 1: unknown column 'crff'"),
    "missing column": ("jobs.csv", "audio,output\na.wav,a.mp4\n", "line 1: no 'model' column"),
    "not a number": (
        "jobs.csv",
        "audio,model,output,crf\na.wav,tiny,a.mp4,high\n",
        "line 2: crf must be a whole number",
    ),
    "bad option": ("jobs.csv", "audio,model,output,loop\na.wav,tiny,a.mp4,zigzag\n", "line 2: Loop must be one of"),
    "bad device": ("jobs.csv", "audio,model,output,device\na.wav,tiny,a.mp4,gpu7\n", "line 2: Unknown device 'gpu7'"),
    "extra cells": ("jobs.csv", "audio,model,output\na.wav,tiny,a.mp4,18\n", "line 2: the row has more cells"),
    "empty cell": ("jobs.csv", "audio,model,output\na.wav,,a.mp4\n", "line 2: the 'model' cell is empty"),
    "no output": ("jobs.csv", "audio,model\na.wav,tiny\n", "line 2: no output is given"),
    "same output": ("jobs.csv", "audio,model,output\na.wav,tiny,x.mp4\nb.wav,tiny,x.mp4\n", "line 3: writes"),
    "header only": ("jobs.csv", "audio,model,output\n", "lists no jobs"),
    "bad json": (
        "jobs.jsonl",
        '{"audio": "a.wav", "model": "tiny", "output": "a.mp4"}\n{"audio": \n',
        "line 2: not valid JSON",
    ),
    "not an object": ("jobs.jsonl", "[1, 2]\n", "line 1: each line must be one JSON object"),
    "bool for int": (
        "jobs.jsonl",
        '{"audio": "a.wav", "model": "tiny", "output": "a.mp4", "crf": true}\n',
        "line 1: crf must be a whole number",
    ),
    "unknown key": ("jobs.jsonl", '{"audio": "a.wav", "model": "tiny", "fps": 30}\n', "line 1: unknown key 'fps'"),
    "other format": ("jobs.txt", "audio,model\n", "must be a .csv or .jsonl file"),
}


@pytest.mark.parametrize("case", MALFORMED)
def test_malformed_manifest_is_one_clear_sentence(case, tmp_path):
    name, text, fragment = MALFORMED[case]
    (tmp_path / name).write_text(text)
    result = runner.invoke(app, ["render-many", str(tmp_path / name)])
    assert result.exit_code != 0 and fragment in result.stderr, result.output
    assert str(tmp_path / name) in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_missing_manifest(tmp_path):
    result = runner.invoke(app, ["render-many", str(tmp_path / "jobs.csv")])
    assert result.exit_code == 1 and "does not exist" in result.stderr


def test_relative_paths_come_from_the_manifest_directory(tiny_package, tmp_path):
    (tmp_path / "sub").mkdir()
    manifest = write_csv(
        tmp_path / "sub" / "jobs.csv",
        [{"audio": "a.wav", "model": "./pkg", "output": "o/a.mp4"}, {"audio": "/abs/b.wav", "model": "tiny"}],
    )
    first, second = read_jobs(manifest, out_dir=tmp_path / "renders")
    # locations are text (a local path or a URL); local ones absolute
    assert Path(first.audio) == tmp_path / "sub" / "a.wav" and first.model == str(tmp_path / "sub" / "pkg")
    assert (
        Path(first.output) == tmp_path / "sub" / "o" / "a.mp4" and first.session.workers is None
    )  # empty cells keep the automatic default
    assert Path(second.audio).as_posix() == "/abs/b.wav" and second.model == "tiny"
    assert Path(second.output) == (tmp_path / "renders" / "b.mp4").resolve()


def test_ray_missing_is_one_sentence(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(LipsyncError, match=r"pip install 'lipsync-render\[ray\]'"):
        import_ray()


def test_ray_renders_the_same_frames_as_local(tiny_package, clips, tmp_path):
    ray = pytest.importorskip("ray")
    rows = [
        {"audio": clips[0.4], "model": tiny_package, "output": "a.mp4", "workers": 0, "start_frame": 3},
        {"audio": clips[0.6], "model": tiny_package, "output": "b.mp4", "workers": 0, "loop": "forward"},
    ]
    for row in rows:  # the reference path: the same bits wherever it runs
        row["precision"] = "fp32"
    columns = ("audio", "model", "output", "workers", "start_frame", "loop", "precision")
    (tmp_path / "local").mkdir()
    (tmp_path / "ray").mkdir()
    local = run_jobs(read_jobs(write_csv(tmp_path / "local" / "jobs.csv", rows, columns)))
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        remote = run_jobs(read_jobs(write_csv(tmp_path / "ray" / "jobs.csv", rows, columns)), ray_address="local")
    finally:
        ray.shutdown()
    assert [r.status for r in local] == [r.status for r in remote] == ["ok", "ok"], remote
    assert [r.model for r in remote] == [str(tiny_package)] * 2
    for name in ("a.mp4", "b.mp4"):
        ours = list(read_frames_bgr(tmp_path / "local" / name))
        theirs = list(read_frames_bgr(tmp_path / "ray" / name))
        assert len(ours) == len(theirs) > 0
        assert all(np.array_equal(a, b) for a, b in zip(ours, theirs))
        assert sidecar_path(tmp_path / "ray" / name).is_file()
