"""Hostile input, second sweep (issue 24), outputs and files read: no command writes over an input; every JSON the
tool reads is bounded (huge integers, deep nesting); render-many plans in linear time; a SIGKILLed render leaves
no partial, helper process or shared memory of its own."""

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from hostile_models import edit_manifest
from typer.testing import CliRunner

from lipsync_render import paths
from lipsync_render.cli.app import app
from lipsync_render.jobs.manifest import read_jobs
from tests.cli.test_hostile_input import marked_processes

runner = CliRunner()
HUGE = "9" * 5000  # json.loads raises ValueError past 4,300 digits


def digests(folder: Path) -> dict[str, str]:
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}


def assert_refused(result, code: int, *fragments: str) -> None:
    assert result.exit_code == code, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip() and not line.startswith("problem:")]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    assert all(f in result.stderr for f in fragments), result.stderr
    assert "Traceback" not in result.output and not isinstance(result.exception, RecursionError | ValueError)


@pytest.fixture
def package(tiny_package, tmp_path) -> Path:
    return Path(shutil.copytree(tiny_package, tmp_path / "pkg"))


# --- class 1: no output of any command replaces an input -----------------------------------------------------


@pytest.mark.parametrize("target", ["package.json", "crop_rects.json", "notes.md"])
def test_bench_never_saves_onto_a_package_file(target, package):
    (package / "notes.md").write_text("# notes")  # any file of the package's folder is its input
    before = digests(package)
    result = runner.invoke(app, ["bench", "--model", str(package), "--frames", "4", "--save", str(package / target)])
    assert_refused(result, 6, "is the input", target)
    assert digests(package) == before


def test_bench_never_saves_onto_its_audio_or_twice(package, tmp_path):
    audio = tmp_path / "x.json"
    audio.write_text("not audio, but the input all the same")
    result = runner.invoke(app, ["bench", "--model", str(package), "--audio", str(audio), "--save", str(audio)])
    assert_refused(result, 6, "is the input")
    assert audio.read_text() == "not audio, but the input all the same"
    twice = ["--save", str(tmp_path / "r.json"), "--save", str(tmp_path / "." / "r.json")]
    assert_refused(runner.invoke(app, ["bench", "--model", str(package), "--frames", "4", *twice]), 6, "given twice")
    assert not (tmp_path / "r.json").exists()


def test_features_checks_every_output_before_writing_any(package, short_wav, tmp_path):
    before = digests(package)
    table = tmp_path / "t.npy"
    for mel in (table, package / "crop_rects.json"):
        result = runner.invoke(
            app, ["features", str(short_wav), "--model", str(package), "-o", str(table), "--mel", str(mel)]
        )
        assert_refused(result, 6)
        assert not table.exists(), "nothing written before every output is checked"
    assert digests(package) == before


def test_export_onnx_never_replaces_its_checkpoint(tmp_path):
    checkpoint = tmp_path / "unet.onnx"  # a checkpoint that happens to carry the name of the export
    checkpoint.write_bytes(b"checkpoint bytes")
    result = runner.invoke(app, ["package", "export-onnx", "--unet", str(checkpoint), "-o", str(tmp_path)])
    assert_refused(result, 6, "is the input")
    assert checkpoint.read_bytes() == b"checkpoint bytes"


def test_build_never_replaces_a_package_that_holds_its_dataset(package):
    dataset = package / "dataset"
    dataset.mkdir()
    (dataset / "precious.txt").write_text("training data")
    result = runner.invoke(app, ["package", "build", str(package), "--from", str(dataset)])
    assert_refused(result, 4, "holds the input")
    assert (dataset / "precious.txt").read_text() == "training data"


# --- class 6: one bounded JSON reader ------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["manifest", "rects"])
def test_a_huge_integer_in_package_json_is_one_sentence(where, package, short_wav, tmp_path):
    if where == "manifest":
        text = (package / "package.json").read_text().replace('"fps": 25', f'"fps": {HUGE}')
    else:
        text = f"[[{HUGE}, 0, 10, 10]]"
        edit_manifest(package, lambda data: data["checksums"].pop("crop_rects.json"))
    (package / ("package.json" if where == "manifest" else "crop_rects.json")).write_text(text)
    result = runner.invoke(app, ["package", "validate", str(package)])
    assert_refused(result, 4, "problem(s)")
    assert "5000 characters" in result.stderr
    result = runner.invoke(app, ["render", str(short_wav), "--model", str(package), "-o", str(tmp_path / "x.mp4")])
    assert_refused(result, 4, "5000 characters")


@pytest.mark.parametrize("row", [f'{{"audio": "a.wav", "model": "m", "output": {HUGE}}}', "[" * 50_000 + "]" * 50_000])
def test_a_hostile_jsonl_row_is_one_sentence(row, tmp_path):
    manifest = tmp_path / "jobs.jsonl"
    manifest.write_text('{"audio": "a.wav", "model": "m", "output": "a.mp4"}\n' + row + "\n")
    result = runner.invoke(app, ["render-many", str(manifest)])
    assert_refused(result, 1, "jobs.jsonl, line 2")


def test_hostile_sidecars_and_caches_are_ignored_not_fatal(package, short_wav, tmp_path):
    output = tmp_path / "a.mp4"
    manifest = tmp_path / "jobs.csv"
    manifest.write_text(f"audio,model,output,workers\n{short_wav},{package},{output},0\n")
    output.write_bytes(b"an old render")
    (tmp_path / "a.mp4.json").write_text("[" * 100_000 + "]" * 100_000)
    (package / "cache").mkdir(exist_ok=True)
    (package / "cache" / "precision-auto.json").write_text(f'{{"x": {HUGE}}}')
    result = runner.invoke(app, ["render-many", str(manifest), "--skip-existing", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout.splitlines()[0])["status"] == "ok"


# --- class 4: render-many plans in linear time (timings: benchmarks/manifest_planning.py) ---------------------


def test_output_checks_stat_each_path_once(tmp_path, monkeypatch):
    calls = []
    real = paths.file_key
    monkeypatch.setattr(paths, "file_key", lambda path, folders=None: calls.append(path) or real(path, folders))
    rows = 3000
    manifest = tmp_path / "jobs.csv"
    lines = [f"audio/{i}.wav,demo,out/{i}.mp4" for i in range(rows)]
    manifest.write_text("audio,model,output\n" + "\n".join(lines) + "\n")
    assert len(read_jobs(manifest)) == rows
    assert len(calls) == 3 * rows  # outputs for collisions, then inputs and outputs once each: linear


def test_an_output_that_is_an_input_is_found_among_many(tmp_path):
    outputs = [tmp_path / f"o{i}.mp4" for i in range(1000)]
    inputs = [tmp_path / f"i{i}.wav" for i in range(1000)]
    inputs[700].write_bytes(b"audio")
    (tmp_path / "link.mp4").hardlink_to(inputs[700])
    outputs[500] = tmp_path / "sub" / ".." / "link.mp4"
    (tmp_path / "sub").mkdir()
    assert paths.first_overwritten_input(outputs, inputs) == (outputs[500], inputs[700])
    assert paths.first_collision([(str(p), p) for p in [*outputs, tmp_path / "o3.mp4"]])[1:] == (
        str(tmp_path / "o3.mp4"),
        tmp_path / "o3.mp4",
    )


# --- class 9 (the lead's change): a SIGKILLed render leaves no partial -----------------------------------------


def shm_mapped_by(pids: list[int]) -> set[str]:
    """The /dev/shm entries the processes under test have mapped (never a diff of the whole machine's /dev/shm)."""
    names = set()
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/maps").read_text().splitlines():
                if "/dev/shm/" in line:
                    names.add(line.split("/dev/shm/", 1)[1].split()[0])
        except OSError:
            continue
    return names


def test_a_sigkilled_render_leaves_no_partial(tiny_package, tmp_path):
    wav = tmp_path / "long.wav"
    sf.write(wav, (0.1 * np.random.default_rng(0).standard_normal(16000 * 60)).astype(np.float32), 16000)
    out, marker = tmp_path / "out", uuid.uuid4().hex
    out.mkdir()
    command = [sys.executable, "-m", "lipsync_render", "render", str(wav), "--model", str(tiny_package)]
    process = subprocess.Popen(
        [*command, "--out-dir", str(out), "-q", "-w", "2"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**os.environ, "LIPSYNC_TEST_MARKER": marker},
    )
    deadline = time.monotonic() + 60
    while not list(out.glob(".*partial*")) and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.05)
    time.sleep(0.5)
    segments = shm_mapped_by(marked_processes(marker))
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=30)
    deadline = time.monotonic() + 2.5
    while (list(out.iterdir()) or marked_processes(marker)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert marked_processes(marker) == []
    assert list(out.iterdir()) == [], "the partial is removed when the render is killed"
    time.sleep(2)  # the resource tracker frees the ring once every helper is gone
    assert not {name for name in segments if Path("/dev/shm", name).exists()}
