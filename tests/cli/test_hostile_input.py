"""Hostile input, class by class, through the real command: refused in one sentence with the documented exit code,
nothing written outside the output, no file left behind, no helper process or shared memory left, inputs intact.

The signal cases run `lipsync` as a real subprocess; the rest use the Typer runner in this process.
"""

import hashlib
import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import onnx
import psutil
import pytest
import soundfile as sf
from onnx import TensorProto, helper
from typer.testing import CliRunner

from lipsync_render.cli.app import app

runner = CliRunner()


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def shm_segments(pid: int) -> set[str]:
    """The shared-memory rings that process ``pid`` created (rings are named ``lipsync-PID-TOKEN``), so other
    renders on the machine never count."""
    return {p.name for p in Path("/dev/shm").glob(f"lipsync-{pid}-*")} if Path("/dev/shm").is_dir() else set()


def assert_refused(result, code: int, *fragments: str) -> None:
    """The documented exit code, one 'error:' line naming the problem, no traceback."""
    assert result.exit_code == code, result.output
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and all(f in lines[0] for f in fragments), result.stderr
    assert "Traceback" not in result.output


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".mp4") or "partial" in p.name)


@pytest.fixture
def package(tiny_package, tmp_path) -> Path:
    return Path(shutil.copytree(tiny_package, tmp_path / "pkg"))


def edit_manifest(package: Path, change) -> None:
    data = json.loads((package / "package.json").read_text())
    change(data)
    (package / "package.json").write_text(json.dumps(data))


def render(*args):
    return runner.invoke(app, ["render", *map(str, args)])


def validate(package: Path):
    """`lipsync package validate`, whose one 'error:' line sums up the 'problem:' lines above it."""
    result = runner.invoke(app, ["package", "validate", str(package)])
    result.problems = "\n".join(line for line in result.stderr.splitlines() if line.startswith("problem:"))
    return result


def assert_invalid(result, *fragments: str) -> None:
    assert_refused(result, 4, "problem(s)")
    assert all(f in result.problems for f in fragments), result.stderr


# --- output targets ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["fifo", "directory", "symlink to a directory", "symlink to a file", "socket"])
def test_a_target_that_is_not_a_regular_file_is_never_replaced(kind, tiny_package, short_wav, tmp_path):
    target = tmp_path / "out.mp4"
    if kind == "fifo":
        os.mkfifo(target)
    elif kind == "directory":
        target.mkdir()
    elif kind == "socket":
        server = socket.socket(socket.AF_UNIX)
        server.bind(str(target))
    else:
        destination = tmp_path / ("elsewhere" if "directory" in kind else "precious.txt")
        destination.mkdir() if "directory" in kind else destination.write_text("keep me")
        target.symlink_to(destination)
    before = os.lstat(target)
    result = render(short_wav, "--model", tiny_package, "-o", target)
    assert_refused(result, 1, str(target), "refusing to replace it")
    after = os.lstat(target)
    assert (after.st_mode, after.st_ino) == (before.st_mode, before.st_ino)
    assert not [p for p in tmp_path.iterdir() if "partial" in p.name]
    if kind == "symlink to a file":
        assert (tmp_path / "precious.txt").read_text() == "keep me"


def test_the_output_may_not_be_an_input(package, tmp_path):
    wav = tmp_path / "in.wav"
    sf.write(wav, np.zeros(8000, np.int16), 16000)
    before = digest(wav)
    result = render(wav, "--model", package, "-o", wav)
    assert_refused(result, 2, "is the input", str(wav))
    assert digest(wav) == before
    manifest = package / "package.json"
    before = digest(manifest)
    result = render(wav, "--model", package, "-o", manifest, "-w", "0")
    assert_refused(result, 1, "is the input", "package.json")
    assert digest(manifest) == before


def test_colliding_outputs_are_refused_before_anything_renders(tiny_package, tmp_path):
    for folder in "ab":
        (tmp_path / folder).mkdir()
        sf.write(tmp_path / folder / "x.wav", np.zeros(8000, np.int16), 16000)
    out = tmp_path / "out"
    result = render(tmp_path / "a" / "x.wav", tmp_path / "b" / "x.wav", "--model", tiny_package, "--out-dir", out)
    assert_refused(result, 2, str(tmp_path / "a" / "x.wav"), str(tmp_path / "b" / "x.wav"))
    assert not out.exists() or not list(out.iterdir())


def test_a_missing_out_dir_is_created(tiny_package, short_wav, tmp_path):
    out = tmp_path / "new" / "deeper"
    result = render(short_wav, "--model", tiny_package, "--out-dir", out, "-w", "0", "-q")
    assert result.exit_code == 0, result.output
    assert (out / "short.mp4").is_file()


def test_a_later_render_removes_partials_of_dead_processes(tiny_package, short_wav, tmp_path):
    dead = tmp_path / f".short.{2**22 + 12345}.partial.mp4"  # above any pid this machine hands out
    alive = tmp_path / f".short.{os.getppid()}.partial.mp4"  # a live process: not ours to remove
    dead.write_bytes(b"half a video")
    alive.write_bytes(b"another render's")
    result = render(short_wav, "--model", tiny_package, "--out-dir", tmp_path, "-w", "0", "-q")
    assert result.exit_code == 0, result.output
    assert not dead.exists() and alive.exists()


# --- package containment and validation ---------------------------------------------------------------------


def point_rects_at(target: str):
    def change(data):
        data["files"]["rects"] = target
        data["checksums"].pop("crop_rects.json")

    return change


@pytest.mark.parametrize("escape", ["absolute", "dotdot", "symlink"])
def test_package_files_must_stay_inside_the_package(escape, package, tmp_path):
    outside = tmp_path / "outside_rects.json"
    shutil.copy(package / "crop_rects.json", outside)
    if escape == "absolute":
        edit_manifest(package, point_rects_at(str(outside)))
    elif escape == "dotdot":
        edit_manifest(package, point_rects_at("../outside_rects.json"))
    else:
        (package / "crop_rects.json").unlink()
        (package / "crop_rects.json").symlink_to(outside)
        edit_manifest(package, lambda data: data["checksums"].pop("crop_rects.json"))
    assert_invalid(validate(package), "outside the package")
    result = render(tmp_path / "any.wav", "--model", package, "-o", tmp_path / "x.mp4")
    assert_refused(result, 4, "outside the package")


def test_checksums_may_only_name_package_files(package, tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("not for hashing")
    edit_manifest(package, lambda data: data["checksums"].update({str(secret): "0" * 64}))
    assert_invalid(validate(package), "not one of the package's files")


def test_a_package_without_checksums_validates_with_a_warning(package):
    edit_manifest(package, lambda data: data.pop("checksums"))
    result = validate(package)
    assert result.exit_code == 0 and "warning:" in result.stderr and "no checksums" in result.stderr


MANIFEST_CASES = {
    "fps 30": (lambda d: d.update(fps=30), "must be 25 fps"),
    "fps 0": (lambda d: d.update(fps=0), "must be 25 fps"),
    "fps true": (lambda d: d.update(fps=True), "'fps'"),
    "odd width": (lambda d: d.update(width=1279), "even number"),
    "huge frames": (lambda d: d.update(width=16000, height=16000), "from 16 to 4096"),
    "frame count": (lambda d: d.update(frame_count=13), "frames"),
    "unknown role": (lambda d: d["files"].update(extra="x.bin"), "unknown file role"),
    "model names": (lambda d: d["models"]["unet"].update(inputs=[]), "input/output names"),
}


@pytest.mark.parametrize("case", MANIFEST_CASES)
def test_validate_finds_what_render_would_refuse(case, package, short_wav, tmp_path):
    change, fragment = MANIFEST_CASES[case]
    edit_manifest(package, change)
    assert_invalid(validate(package), fragment)
    result = render(short_wav, "--model", package, "-o", tmp_path / "x.mp4")
    assert_refused(result, 4, fragment)
    assert not (tmp_path / "x.mp4").exists()


@pytest.mark.parametrize(
    "text, fragment", [("[" * 100_000 + "]" * 100_000, "nested too deeply"), (" " * (2 << 20) + "{}", "at most")]
)
def test_a_manifest_is_read_with_bounds(text, fragment, package):
    (package / "package.json").write_text(text)
    assert_invalid(validate(package), fragment)


def test_rect_values_are_checked_before_any_cast(package):
    rects = json.loads((package / "crop_rects.json").read_text())
    rects[3] = [2**32 + r for r in rects[3]]
    (package / "crop_rects.json").write_text(json.dumps(rects))
    edit_manifest(package, lambda data: data["checksums"].pop("crop_rects.json"))
    assert_invalid(validate(package), "integer rectangle")


@pytest.mark.parametrize("values", ["nan", "empty"])
def test_pre_extracted_features_must_be_finite_and_present(values, package):
    table = np.zeros((0, 512) if values == "empty" else (40, 512), np.float32)
    if values == "nan":
        table[7, 3] = np.nan
    np.save(package / "aud_ave.npy", table)
    edit_manifest(package, lambda data: data["files"].update(features="aud_ave.npy"))
    assert_invalid(validate(package), "aud_ave.npy")


def small_unet(path: Path, output_dims, body) -> None:
    """A UNet-shaped model (true input names and shapes) whose output is ``body(visual)``."""
    visual = helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 6, 320, 320])
    audio = helper.make_tensor_value_info("audio", TensorProto.FLOAT, ["batch", 32, 16, 16])
    output = helper.make_tensor_value_info("output", TensorProto.FLOAT, output_dims)
    nodes, initializers, domains = body()
    graph = helper.make_graph(nodes, "hostile", [visual, audio], [output], initializers)
    opsets = [helper.make_opsetid("", 17), *(helper.make_opsetid(d, 1) for d in domains)]
    onnx.save(helper.make_model(graph, opset_imports=opsets, ir_version=8), path)


def slice_rgb(op="Identity"):
    starts, ends, axes = (helper.make_tensor(n, TensorProto.INT64, [1], [v]) for n, v in (("s", 0), ("e", 3), ("a", 1)))
    nodes = [helper.make_node("Slice", ["input", "s", "e", "a"], ["rgb"]), helper.make_node(op, ["rgb"], ["output"])]
    return nodes, [starts, ends, axes], []


def nan_output():
    nodes, initializers, domains = slice_rgb("Log")  # log of the negated input: NaN wherever the input is > 0
    nodes.insert(1, helper.make_node("Neg", ["rgb"], ["negative"]))
    nodes[2] = helper.make_node("Log", ["negative"], ["output"])
    return nodes, initializers, domains


def custom_op():
    nodes, initializers, _ = slice_rgb()
    nodes[1] = helper.make_node("MagicFace", ["rgb"], ["output"], domain="com.example.faces")
    return nodes, initializers, ["com.example.faces"]


def wrong_channels():
    nodes, initializers, domains = slice_rgb()
    initializers[1] = helper.make_tensor("e", TensorProto.INT64, [1], [2])  # two channels, not three
    return nodes, initializers, domains


def replace_unet(package: Path, dims, body) -> None:
    small_unet(package / "unet.onnx", dims, body)
    edit_manifest(package, lambda data: data["checksums"].pop("unet.onnx"))


def test_unknown_custom_operators_are_a_package_error(package):
    replace_unet(package, ["batch", 3, 320, 320], custom_op)
    assert_invalid(validate(package), "custom operator com.example.faces::MagicFace")


def test_a_symbolic_output_shape_is_checked_by_running_one_sample(package):
    replace_unet(package, ["batch", "c", "h", "w"], wrong_channels)
    assert_invalid(validate(package), "gives shape [1, 2, 320, 320]")


def test_weights_stored_outside_the_package_are_refused(package, tmp_path):
    model = onnx.load(str(package / "unet.onnx"))
    onnx.save(model, str(package / "unet.onnx"), save_as_external_data=True, location="weights.bin", size_threshold=0)
    model = onnx.load(str(package / "unet.onnx"), load_external_data=False)
    for tensor in model.graph.initializer:  # point the weights outside the package (onnx.save refuses to)
        for entry in tensor.external_data:
            if entry.key == "location":
                entry.value = "../stolen.bin"
    (package / "unet.onnx").write_bytes(model.SerializeToString())
    edit_manifest(package, lambda data: data["checksums"].pop("unet.onnx"))
    assert_invalid(validate(package), "outside the package directory")


def test_a_unet_that_gives_nan_fails_the_render_naming_the_model(package, short_wav, tmp_path):
    replace_unet(package, ["batch", 3, 320, 320], nan_output)
    assert validate(package).exit_code == 0
    result = render(short_wav, "--model", package, "-o", tmp_path / "x.mp4", "-w", "0")
    assert_refused(result, 1, "UNet model", "unet.onnx", "NaN or infinite")
    assert leftovers(tmp_path) == []


# --- option values ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "flag, value, fragment",
    [
        ("--threads", "100000", "Threads must be"),
        ("--workers", "1000", "Workers must be"),
        ("--crf", "99", "CRF must be"),
        ("--preset", "bogus", "Preset must be one of"),
        ("--device", "tpu", "Unknown device 'tpu'"),
        ("--start-frame", "9" * 20, "Start frame must be"),
        ("--batch-size", "0", "Batch size must be at least 1"),
        ("--precision", "int4", "Precision must be one of"),
        ("--loop", "zigzag", "Loop must be one of"),
        ("--frames-format", "gif", "Frames format must be one of"),
        ("--codec", "vp9", "Video codec must be one of h264, hevc"),
        ("--video-encoder", "x264", "Video encoder must be one of auto, software, nvenc"),
        ("--size", "1280", "Unknown output size '1280': use WxH"),
        ("--size", "1279x720", "Output size needs an even width and height"),
        ("--size", "8x8", "Output size needs an even width and height"),
        ("--size", "99999x720", "Output size needs an even width and height"),
        ("--audio-bitrate", "8", "Audio bitrate must be at least 16"),
        ("--audio-bitrate", "9999", "Audio bitrate must be at least 16 and at most 512"),
        ("--blend", "feather:abc", "Unknown blend 'feather:abc': use hard|feather[:PX]"),
        ("--blend", "soft", "Unknown blend 'soft'"),
        ("--blend", "feather:0", "Blend needs a feather width of 1 to 64 pixels (got 'feather:0')"),
        ("--blend", "feather:65", "Blend needs a feather width of 1 to 64 pixels"),
        ("--blend", "feather:" + "9" * 40, "Blend needs a feather width of 1 to 64 pixels"),
        ("--silence", "mute", "Silence must be one of keep, idle"),
    ],
)
def test_option_values_are_refused_before_anything_loads(flag, value, fragment, tmp_path):
    result = render(tmp_path / "missing.wav", "--model", "no-such-package", flag, value)
    assert_refused(result, 2, fragment)  # exit 2, not the package's 4: nothing was loaded


def test_help_shows_the_choices():
    result = runner.invoke(app, ["render", "--help"], env={"COLUMNS": "250"})
    for choices in (
        "auto|fp32|fp16|bf16|int8",
        "auto|onnxruntime|openvino",
        "pingpong|forward",
        "auto|software|nvenc",
        "h264|hevc",
        "jpg|png",
        "veryfast",
        "hard|feather[:PX]",
        "keep|idle",
    ):
        assert choices in result.stdout


# --- signals and orphans (real processes) ------------------------------------------------------------------


def start_render(package: Path, tmp_path: Path, marker: str, workers: int = 1) -> tuple[subprocess.Popen, Path]:
    wav = tmp_path / "long.wav"
    sf.write(wav, (0.1 * np.random.default_rng(0).standard_normal(16000 * 60)).astype(np.float32), 16000)
    out = tmp_path / "out"
    out.mkdir()
    env = {**os.environ, "LIPSYNC_TEST_MARKER": marker}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "lipsync_render",
            "render",
            str(wav),
            "--model",
            str(package),
            "--out-dir",
            str(out),
            "--quiet",
            "-w",
            str(workers),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    deadline = time.monotonic() + 60
    while not list(out.glob(".*partial*")) and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.05)
    time.sleep(0.5)
    return process, out


def marked_processes(marker: str) -> list[int]:
    """Processes started with the marker in their environment (the render and every helper it spawned)."""
    found = []
    for process in psutil.process_iter():
        try:
            if process.environ().get("LIPSYNC_TEST_MARKER") == marker:
                found.append(process.pid)
        except psutil.Error:
            continue
    return found


def wait_until_gone(marker: str, seconds: float) -> list[int]:
    deadline = time.monotonic() + seconds
    while (alive := marked_processes(marker)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return alive


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_sigterm_and_sighup_end_a_render_like_ctrl_c(signum, tiny_package, tmp_path):
    marker = uuid.uuid4().hex
    process, out = start_render(tiny_package, tmp_path, marker)
    assert shm_segments(process.pid), "the render's ring exists while it runs"
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 128 + signum, stderr
    assert stderr.strip() == f"error: terminated by {signal.Signals(signum).name}.", stderr
    assert list(out.iterdir()) == []
    assert wait_until_gone(marker, 5) == []
    assert shm_segments(process.pid) == set()


def test_a_killed_render_leaves_no_helper_process_or_shared_memory(tiny_package, tmp_path):
    marker = uuid.uuid4().hex
    process, _ = start_render(tiny_package, tmp_path, marker, workers=2)
    assert shm_segments(process.pid), "the render's ring exists while it runs"
    helpers = [pid for pid in marked_processes(marker) if pid != process.pid]
    assert len(helpers) >= 3, "the video encoder and two compositing workers run"
    process.kill()
    process.communicate(timeout=30)
    assert wait_until_gone(marker, 2.5) == []
    deadline = time.monotonic() + 5  # the helpers free the ring when they see their parent gone
    while shm_segments(process.pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert shm_segments(process.pid) == set()


# --- resume -------------------------------------------------------------------------------------------------


def test_skip_existing_notices_a_changed_output_of_the_same_size(tiny_package, short_wav, tmp_path):
    manifest = tmp_path / "jobs.csv"
    manifest.write_text(f"audio,model,output,workers\n{short_wav},{tiny_package},{tmp_path / 'a.mp4'},0\n")
    assert runner.invoke(app, ["render-many", str(manifest)]).exit_code == 0
    record = json.loads((tmp_path / "a.mp4.json").read_text())
    assert record["options"]["video_encoder"] == "libx264" and len(record["output_sha256"]) == 64
    video = bytearray((tmp_path / "a.mp4").read_bytes())
    middle = len(video) // 2
    video[middle : middle + 2000] = bytes(2000)
    (tmp_path / "a.mp4").write_bytes(bytes(video))
    result = runner.invoke(app, ["render-many", str(manifest), "--skip-existing", "--json"])
    assert json.loads(result.stdout.splitlines()[0])["status"] == "ok", result.output


# --- precision and caches -----------------------------------------------------------------------------------


def test_int8_without_any_writable_cache_is_one_sentence(package, short_wav, tmp_path, monkeypatch):
    shutil.rmtree(package / "cache", ignore_errors=True)
    (package / "cache").write_text("a file where the cache folder would go")
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker / "cache"))
    result = render(short_wav, "--model", package, "-o", tmp_path / "x.mp4", "--precision", "int8", "-w", "0")
    assert_refused(result, 4, "No cache folder can be written")


def test_fp16_on_the_cpu_is_refused_before_converting(package, short_wav, tmp_path):
    pytest.importorskip("onnxconverter_common")
    result = render(
        short_wav, "--model", package, "-o", tmp_path / "x.mp4", "--precision", "fp16", "--device", "cpu", "-w", "0"
    )
    assert_refused(result, 5, "fp16 needs a CUDA or TensorRT device")
    assert not list(package.glob("cache/*fp16*"))


def test_synthesised_packages_honour_the_umask(tmp_path):
    previous = os.umask(0o022)
    try:
        result = runner.invoke(
            app,
            ["package", "synth", "shared", "--tiny", "--frames", "2", "--size", "64x64", "--out-dir", str(tmp_path)],
        )
    finally:
        os.umask(previous)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "shared").stat().st_mode & 0o777 == 0o755
    assert (tmp_path / "shared" / "unet.onnx").stat().st_mode & 0o777 == 0o644


# --- other outputs: features, bench reports, package destinations --------------------------------------------


def test_features_output_never_replaces_a_fifo_or_an_input(tiny_package, short_wav, tmp_path):
    fifo = tmp_path / "table.npy"
    os.mkfifo(fifo)
    result = runner.invoke(app, ["features", str(short_wav), "--model", str(tiny_package), "-o", str(fifo)])
    assert_refused(result, 6, "refusing to replace it")
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    before = digest(short_wav)
    result = runner.invoke(app, ["features", str(short_wav), "--model", str(tiny_package), "-o", str(short_wav)])
    assert_refused(result, 6, "is the input")
    assert digest(short_wav) == before and leftovers(tmp_path) == []


def test_bench_reports_never_replace_what_is_not_a_file(tiny_package, tmp_path):
    (tmp_path / "report.json").mkdir()
    result = runner.invoke(
        app, ["bench", "--model", str(tiny_package), "--frames", "4", "--save", str(tmp_path / "report.json")]
    )
    assert_refused(result, 6, "is a directory")


def test_synth_never_deletes_a_folder_that_is_not_a_package(tmp_path):
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "thesis.txt").write_text("years of work")
    result = runner.invoke(app, ["package", "synth", str(precious), "--tiny", "--frames", "2", "--size", "64x64"])
    assert_refused(result, 4, "is not a model package")
    assert (precious / "thesis.txt").read_text() == "years of work"
