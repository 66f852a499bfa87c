"""Package format: loading, name resolution, and one test per validation problem (message and exit code)."""

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper
from typer.testing import CliRunner

from lipsync_render.cli.app import app
from lipsync_render.errors import PackageError
from lipsync_render.package import load_package, resolve_package_path, validate_package

runner = CliRunner()


@pytest.fixture
def package(tiny_package, tmp_path) -> Path:
    """A private, writable copy of the tiny package."""
    return Path(shutil.copytree(tiny_package, tmp_path / "pkg"))


def manifest(path: Path) -> dict:
    return json.loads((path / "package.json").read_text())


def write_manifest(path: Path, data: dict) -> None:
    (path / "package.json").write_text(json.dumps(data))


def edit_rects(path: Path, change, keep_checksum: bool = False) -> None:
    """Rewrite crop_rects.json through ``change(rects)``; drop its checksum unless testing the checksum."""
    rects = json.loads((path / "crop_rects.json").read_text())
    (path / "crop_rects.json").write_text(json.dumps(change(rects)))
    if not keep_checksum:
        data = manifest(path)
        data["checksums"].pop("crop_rects.json")
        write_manifest(path, data)


def assert_problem(path: Path, *fragments: str) -> None:
    """validate lists the problem, load raises it, and the CLI exits 4 with it on stderr, no traceback."""
    problems = validate_package(path)
    assert any(all(f in p for f in fragments) for p in problems), problems
    with pytest.raises(PackageError) as error:
        load_package(path)
    assert all(f in str(error.value) for f in fragments) or len(problems) > 1
    result = runner.invoke(app, ["package", "validate", str(path)])
    assert result.exit_code == 4
    assert all(f in result.stderr for f in fragments)
    assert "Traceback" not in result.stderr


def test_tiny_package_loads(tiny_package):
    pkg = load_package(tiny_package)
    assert pkg.frames.shape == (12, 720, 1280, 3) and pkg.frames.dtype == np.uint8
    assert pkg.rects.shape == (12, 4)
    assert pkg.unet_io.inputs == ["input", "audio"] and pkg.audio_encoder_io.outputs == ["audio_features"]
    assert validate_package(tiny_package) == []
    result = runner.invoke(app, ["package", "validate", str(tiny_package)])
    assert result.exit_code == 0, result.output


def test_synthetic_rects_follow_the_head(tiny_package):
    rects = load_package(tiny_package).rects
    assert np.all(rects[:, 2] - rects[:, 0] == rects[:, 3] - rects[:, 1])
    assert len({tuple(r) for r in rects}) > 1, "rectangles must vary frame to frame"


def test_inspect_prints_models_and_rects(tiny_package):
    result = runner.invoke(app, ["package", "inspect", str(tiny_package)])
    assert result.exit_code == 0, result.output
    for fragment in ("12 x 1280x720", "rects", "input ['batch', 6, 320, 320]", "audio_features", "parameters"):
        assert fragment in result.stdout


def test_resolve_by_name_in_packages_dir_and_env(tiny_package, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "packages").mkdir()
    shutil.copytree(tiny_package, tmp_path / "packages" / "mine")
    assert resolve_package_path("mine") == tmp_path / "packages" / "mine"
    monkeypatch.setenv("LIPSYNC_PACKAGES", str(tiny_package.parent))
    assert resolve_package_path(tiny_package.name) == tiny_package.parent / tiny_package.name


def test_unknown_model(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(PackageError, match="Unknown model 'nobody'"):
        resolve_package_path("nobody")
    result = runner.invoke(app, ["package", "validate", "nobody"])
    assert result.exit_code == 4 and "Unknown model 'nobody'" in result.stderr


def test_missing_manifest(package):
    (package / "package.json").unlink()
    assert_problem(package, "package.json is missing")


def test_malformed_json(package):
    (package / "package.json").write_text("{not json")
    assert_problem(package, "package.json", "not valid JSON")


def test_missing_model_file(package):
    (package / "unet.onnx").unlink()
    assert_problem(package, "unet.onnx is missing")


def test_missing_frames_file(package):
    (package / "frames.npy").unlink()
    assert_problem(package, "frames.npy is missing")


def test_frame_count_differs_from_rect_count(package):
    edit_rects(package, lambda rects: rects[:-2])
    assert_problem(package, "crop_rects.json", "10 rectangles", "12 frames")


def test_rect_outside_the_frame(package):
    edit_rects(package, lambda rects: rects[:5] + [[1200, 600, 1300, 700]] + rects[6:])
    assert_problem(package, "crop_rects.json", "rectangle 5", "outside the 1280x720 frame")


def test_rect_not_square(package):
    edit_rects(package, lambda rects: rects[:2] + [rects[2][:3] + [rects[2][3] + 3]] + rects[3:])
    assert_problem(package, "crop_rects.json", "rectangle 2", "not square")


def test_checksum_mismatch(package):
    edit_rects(package, lambda rects: [[r + 1 for r in rects[0]]] + rects[1:], keep_checksum=True)
    assert_problem(package, "crop_rects.json", "does not match its checksum")


def _model_with_wrong_audio_shape(path: Path) -> None:
    visual = helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 6, 320, 320])
    audio = helper.make_tensor_value_info("audio", TensorProto.FLOAT, ["batch", 16, 32, 32])
    output = helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", 3, 320, 320])
    starts = helper.make_tensor("starts", TensorProto.INT64, [1], [0])
    ends = helper.make_tensor("ends", TensorProto.INT64, [1], [3])
    axes = helper.make_tensor("axes", TensorProto.INT64, [1], [1])
    node = helper.make_node("Slice", ["input", "starts", "ends", "axes"], ["output"])
    graph = helper.make_graph([node], "wrong", [visual, audio], [output], [starts, ends, axes])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), path)


def test_model_that_breaks_the_contract(package):
    _model_with_wrong_audio_shape(package / "unet.onnx")
    data = manifest(package)
    data["checksums"].pop("unet.onnx")
    write_manifest(package, data)
    assert_problem(package, "unet.onnx", "input 'audio'", "[batch, 32, 16, 16]")


def test_model_names_differ_from_manifest(package):
    data = manifest(package)
    data["models"]["encoder"]["inputs"] = ["mel"]
    write_manifest(package, data)
    assert_problem(package, "audio_encoder.onnx", "not the ['mel']")


def test_unreadable_model(package):
    (package / "audio_encoder.onnx").write_bytes(b"garbage" * 10)
    data = manifest(package)
    data["checksums"].pop("audio_encoder.onnx")
    write_manifest(package, data)
    assert_problem(package, "audio_encoder.onnx", "not a readable ONNX model")


def test_frames_of_wrong_shape(package):
    np.save(package / "frames.npy", np.zeros((12, 10, 10, 3), np.uint8))
    data = manifest(package)
    data["checksums"].pop("frames.npy")
    write_manifest(package, data)
    assert_problem(package, "frames.npy", "(12, 720, 1280, 3)")


def test_manifest_missing_entries(package):
    data = manifest(package)
    del data["fps"]
    write_manifest(package, data)
    assert_problem(package, "package.json", "'fps'")


def test_wrong_format_version(package):
    data = manifest(package)
    data["format_version"] = 99
    write_manifest(package, data)
    assert_problem(package, "format_version 99")


def test_bad_features_file(package):
    np.save(package / "aud_ave.npy", np.zeros((5, 256), np.float32))
    data = manifest(package)
    data["files"]["features"] = "aud_ave.npy"
    write_manifest(package, data)
    assert_problem(package, "aud_ave.npy", "(K, 512)")


# --- null rectangles (frames without a face, format version 3) -------------------------------------------


def set_version(path: Path, version: int) -> None:
    data = manifest(path)
    data["format_version"] = version
    write_manifest(path, data)


def test_null_rectangles_load_in_version_3(package):
    set_version(package, 3)
    edit_rects(package, lambda rects: [None if i % 5 == 0 else r for i, r in enumerate(rects)])
    loaded = load_package(package)
    assert np.flatnonzero(~loaded.faces).tolist() == [0, 5, 10]
    assert loaded.rects[0].tolist() == loaded.rects[1].tolist()  # nearest face: frame 1
    assert loaded.rects[5].tolist() == loaded.rects[4].tolist()  # a tie takes the earlier face
    result = runner.invoke(app, ["package", "validate", str(package)])
    assert result.exit_code == 0 and "3 of 12 frames have no face" in result.stdout


def test_older_packages_still_load_with_every_face(package):
    for version in (2, 1):
        set_version(package, version)
        if version == 1:
            data = manifest(package)
            data.pop("frames_store")
            write_manifest(package, data)
        assert load_package(package).faces.all()


def test_null_rectangle_in_a_version_2_package(package):
    edit_rects(package, lambda rects: rects[:4] + [None] + rects[5:])
    assert_problem(package, "crop_rects.json", "null rectangle (frame 4", "format version 3")


def test_every_rectangle_null(package):
    set_version(package, 3)
    edit_rects(package, lambda rects: [None] * len(rects))
    assert_problem(package, "crop_rects.json", "every frame as having no face")


@pytest.mark.parametrize("bad", ["null", [1, 2, 3], [1.0, 2, 3, 4], True, {"rect": [0, 0, 8, 8]}, [None] * 4])
def test_wrong_types_in_version_3_rectangles(package, bad):
    set_version(package, 3)
    edit_rects(package, lambda rects: rects[:2] + [bad] + rects[3:])
    assert_problem(package, "crop_rects.json", "integer rectangle (or null: no face) per frame")
