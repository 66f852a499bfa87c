"""`lipsync bench` with the tiny package: row arithmetic, ceilings, host block, output files (no speed checks)."""

import csv
import io
import json
import sys
import time
from datetime import datetime

import onnxruntime as ort
import pytest
from typer.testing import CliRunner

from lipsync_render.cli.app import app
from lipsync_render.contract import AUDIO_ENCODER
from lipsync_render.diagnostics import bench, bench_report
from lipsync_render.errors import LipsyncError, PackageError
from lipsync_render.media.audio import load_audio
from lipsync_render.media.features import audio_features, frame_count_for_audio
from lipsync_render.options import RenderOptions, SessionOptions
from lipsync_render.package import load_package, write_package
from lipsync_render.rendering.result import STAGES
from lipsync_render.runtimes import get_backend

FRAMES = 30
runner = CliRunner()


@pytest.fixture(scope="module")
def timed_report(tiny_package):
    """The report and the wall seconds the whole run_bench call took, by a stopwatch outside it."""
    start = time.perf_counter()
    report = bench.run_bench(
        tiny_package,
        batch_sizes=[1, 8],
        frames=FRAMES,
        warmup=0,
        repeat=1,
        session=SessionOptions(workers=0, device="cpu"),
    )
    return report, time.perf_counter() - start


@pytest.fixture(scope="module")
def report(timed_report):
    return timed_report[0]


def test_rows_have_positive_numbers(report):
    assert [row.batch_size for row in report.rows] == [1, 8]
    for row in report.rows:
        assert row.frames == FRAMES
        for value in (
            row.end_to_end_fps,
            row.ms_per_frame,
            row.total_ms_per_batch,
            row.cold_seconds,
            row.cold_fps,
            row.load_seconds,
            row.realtime_factor,
            row.peak_rss_mb,
            row.model_only_fps,
            row.without_unet_fps,
            row.efficiency,
        ):
            assert value > 0
        for stage in STAGES:
            assert row.stage_ms_per_frame[stage] > 0, stage
        assert row.providers == ["CPUExecutionProvider"]
        assert row.video_encoder


def test_timings_fit_inside_the_measured_wall_time(timed_report):
    """Every reported duration happened inside the run_bench call, so they cannot add up to more than it took."""
    report, wall = timed_report
    assert report.settings.audio_seconds == pytest.approx(FRAMES / 25)
    assert sum(row.cold_seconds + sum(row.warm_seconds) for row in report.rows) <= wall
    for row in report.rows:
        assert len(row.warm_seconds) == report.settings.repeat
        assert row.load_seconds < row.cold_seconds
        assert row.end_to_end_fps_min <= row.end_to_end_fps <= row.end_to_end_fps_max
        busiest = max(row.stage_ms_per_frame.values())  # busy time of one stage cannot exceed the wall time
        assert busiest <= row.ms_per_frame * (1 + 1e-6)
        assert row.frames / row.end_to_end_fps <= max(row.warm_seconds) * (1 + 1e-6)


def test_efficiency_is_relative_to_the_lowest_ceiling(report):
    encode = report.ceilings.encode_fps
    assert encode > 0 and report.ceilings.encode_frames == FRAMES
    for row in report.rows:
        ceilings = {"UNet": row.model_only_fps, "rest of pipeline": row.without_unet_fps, "video encoder": encode}
        lowest = min(ceilings, key=ceilings.get)
        assert row.bound_by == lowest
        assert row.efficiency == pytest.approx(row.end_to_end_fps / ceilings[lowest])


def test_host_block(report):
    host = report.host
    assert host.cpu and host.logical_cores >= 1 and host.usable_cores >= 1 and host.memory_gb > 0
    assert host.onnxruntime == ort.__version__
    assert host.providers == ["CPUExecutionProvider"] and set(host.providers) <= set(host.available_providers)
    assert host.pyav and host.ffmpeg and "libavcodec" in host.ffmpeg_libraries
    assert host.encoder == report.rows[0].video_encoder and host.preset == "veryfast" and host.crf == 18
    assert datetime.fromisoformat(host.date)
    assert report.max_rss_mb > 0


def test_formatters(report):
    data = json.loads(bench_report.to_json(report))
    assert data["settings"]["batch_sizes"] == [1, 8] and len(data["rows"]) == 2
    assert data["ceilings"]["encode_fps"] > 0 and data["host"]["cpu"]
    lines = list(csv.DictReader(io.StringIO(bench_report.to_csv(report))))
    assert [line["batch_size"] for line in lines] == ["1", "8"]
    assert float(lines[1]["inference_ms_per_batch"]) == pytest.approx(
        8 * float(lines[1]["inference_ms_per_frame"]), rel=1e-3
    )
    markdown = bench_report.to_markdown(report)
    assert markdown.count("| batch |") == 2 and "- ONNX Runtime" in markdown


def test_generated_speech_has_exactly_the_frames(tmp_path):
    path = bench.write_speech_wav(tmp_path / "a.wav", 37)
    assert frame_count_for_audio(len(load_audio(path))) == 37
    samples = load_audio(bench.write_speech_wav(tmp_path / "b.wav", 5))
    assert frame_count_for_audio(len(samples)) == 5 and samples.std() > 0.01


def test_audio_file_sets_the_frame_count(tiny_package, short_wav):
    result = bench.run_bench(
        tiny_package,
        batch_sizes=[4],
        audio=short_wav,
        warmup=0,
        repeat=1,
        session=SessionOptions(workers=0, device="cpu"),
        ceilings=False,
    )
    assert result.settings.frames == 33 and result.rows[0].frames == 33  # ceil(1.3 s * 25)
    assert result.rows[0].model_only_fps is None and result.rows[0].efficiency is None
    assert result.ceilings.encode_fps is None


@pytest.fixture(scope="module")
def package_with_features(tiny_package, tmp_path_factory):
    """A copy of the tiny package with an aud_ave.npy made from generated speech."""
    package = load_package(tiny_package)
    samples = load_audio(bench.write_speech_wav(tmp_path_factory.mktemp("speech") / "speech.wav", 150))
    table = audio_features(samples, get_backend().load(package, AUDIO_ENCODER, SessionOptions(device="cpu")))
    return write_package(
        tmp_path_factory.mktemp("packages") / "tiny_features",
        "tiny_features",
        iter(package.frames),
        package.frame_count,
        package.rects,
        package.unet_path,
        package.audio_encoder_path,
        features=table,
    )


def test_package_features_skip_the_audio_stage(package_with_features):
    result = bench.run_bench(
        package_with_features,
        batch_sizes=[4],
        frames=12,
        warmup=0,
        repeat=1,
        session=SessionOptions(workers=0, device="cpu"),
        render=RenderOptions(features="package"),
        ceilings=False,
    )
    row = result.rows[0]
    assert result.settings.render.features == "package" and row.frames == 12
    assert row.stage_ms_per_frame["audio"] == 0 and row.stage_ms_per_frame["inference"] > 0


def test_package_features_need_aud_ave(tiny_package):
    with pytest.raises(PackageError, match=r"aud_ave\.npy"):
        bench.run_bench(
            tiny_package,
            batch_sizes=[1],
            frames=5,
            repeat=1,
            session=SessionOptions(workers=0),
            render=RenderOptions(features="package"),
        )


def test_bad_settings_fail_early(tiny_package, short_wav):
    with pytest.raises(LipsyncError, match="Batch sizes"):
        bench.run_bench(tiny_package, batch_sizes=[0])
    with pytest.raises(LipsyncError, match="not both"):
        bench.run_bench(tiny_package, frames=5, audio=short_wav)


def test_cli_writes_all_files(tiny_package, tmp_path):
    files = {kind: tmp_path / f"bench.{kind}" for kind in ("json", "csv", "md", "png")}
    result = runner.invoke(
        app,
        [
            "bench",
            "--model",
            str(tiny_package),
            "--batch-sizes",
            "2,4",
            "--frames",
            "8",
            "--warmup",
            "0",
            "--repeat",
            "1",
            "--device",
            "cpu",
            "--save",
            str(files["json"]),
            "--save",
            str(files["csv"]),
            "--save",
            str(files["md"]),
            "--save",
            str(files["png"]),
        ],
    )
    plotting = _matplotlib_importable()
    if not plotting:
        assert result.exit_code != 0 and "matplotlib" in result.stderr and "Traceback" not in result.stderr
        return
    assert result.exit_code == 0, result.output
    assert "Stage busy time" in result.stdout and "end-to-end FPS" in result.stdout and "host:" in result.stdout
    data = json.loads(files["json"].read_text())
    assert [row["batch_size"] for row in data["rows"]] == [2, 4] and data["settings"]["frames"] == 8
    assert len(files["csv"].read_text().strip().splitlines()) == 3
    assert "| batch |" in files["md"].read_text()
    assert files["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_plot_without_matplotlib_fails_in_one_sentence(tiny_package, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # makes `import matplotlib` raise ImportError
    result = runner.invoke(
        app, ["bench", "--model", str(tiny_package), "--frames", "5", "--save", str(tmp_path / "p.png")]
    )
    assert result.exit_code == 1
    assert "matplotlib" in result.stderr and "lipsync-render[plot]" in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "p.png").exists()


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--frames", "5", "--audio", "x.wav"], "not both"),
        (["--batch-sizes", "1,x"], "batch sizes"),
        (["--save", "/nonexistent-dir/r.json"], "/nonexistent-dir does not exist"),
        (["--save", "report.txt"], "the suffix must be one of .json"),
    ],
)
def test_cli_bad_arguments(tiny_package, args, fragment):
    result = runner.invoke(app, ["bench", "--model", str(tiny_package), *args])
    assert result.exit_code != 0 and fragment in result.stderr and "Traceback" not in result.stderr


def _matplotlib_importable() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def test_an_impossible_efficiency_warns_that_the_host_was_busy(report):
    import copy

    busy = copy.deepcopy(report)
    busy.rows[0].efficiency = 1.67
    (warning,) = bench_report.busy_host_warnings(busy)[:1]
    assert "efficiency 167% at batch 1" in warning and "host was busier" in warning


def test_cli_json_prints_the_report_on_stdout_as_render_does(tiny_package):
    args = ["bench", "--model", str(tiny_package), "--batch-sizes", "2", "--frames", "4", "--warmup", "0"]
    result = runner.invoke(app, [*args, "--repeat", "1", "--no-ceilings", "--json", "--quiet"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert [row["batch_size"] for row in report["rows"]] == [2]
