"""Building packages from SyncTalk_2D data: rectangles, both layouts, --video, --smooth, errors, CLI, export."""

import json
import sys
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper
from typer.testing import CliRunner

from lipsync_render.cli.app import app
from lipsync_render.contract import AUDIO_ENCODER, UNET, check_model
from lipsync_render.errors import LipsyncError, PackageError
from lipsync_render.package import load_package, validate_package
from lipsync_render.package.build import build_package
from lipsync_render.package.datasets import landmark_rects
from lipsync_render.package.landmarks import crop_rect, read_landmarks, smooth_rects

WIDTH, HEIGHT = 320, 180
FRAME_COUNT = 12  # > 10, so that numeric and lexicographic frame order differ


# --- fixtures: tiny models and datasets ------------------------------------------------------------


def save_model(path: Path, inputs, outputs, nodes, initializers=()) -> Path:
    graph = helper.make_graph(nodes, "tiny", inputs, outputs, initializer=list(initializers))
    model = helper.make_model(graph, opset_imports=[helper.make_operatorsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def tiny_unet(path: Path, output_size: int = 320) -> Path:
    """input [batch,6,320,320] + audio [batch,32,16,16] -> output = sigmoid(input[:, :3])."""
    tensor = lambda name, *dims: helper.make_tensor_value_info(name, TensorProto.FLOAT, ["batch", *dims])  # noqa: E731
    consts = [helper.make_tensor(n, TensorProto.INT64, [1], [v]) for n, v in (("s", 0), ("e", 3), ("ax", 1))]
    nodes = [
        helper.make_node("Slice", ["input", "s", "e", "ax"], ["rgb"]),
        helper.make_node("Sigmoid", ["rgb"], ["output"]),
    ]
    return save_model(
        path,
        [tensor("input", 6, 320, 320), tensor("audio", 32, 16, 16)],
        [tensor("output", 3, output_size, output_size)],
        nodes,
        consts,
    )


def tiny_encoder(path: Path) -> Path:
    """mel_spectrogram [batch_size,1,80,16] -> audio_features [batch_size,512] (the first 512 values)."""
    consts = [helper.make_tensor(n, TensorProto.INT64, [1], [v]) for n, v in (("s", 0), ("e", 512), ("ax", 1))]
    nodes = [
        helper.make_node("Flatten", ["mel_spectrogram"], ["flat"]),
        helper.make_node("Slice", ["flat", "s", "e", "ax"], ["audio_features"]),
    ]
    return save_model(
        path,
        [helper.make_tensor_value_info("mel_spectrogram", TensorProto.FLOAT, ["batch_size", 1, 80, 16])],
        [helper.make_tensor_value_info("audio_features", TensorProto.FLOAT, ["batch_size", 512])],
        nodes,
        consts,
    )


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("models")
    return {
        "unet": tiny_unet(root / "unet.onnx"),
        "encoder": tiny_encoder(root / "encoder.onnx"),
        "bad_unet": tiny_unet(root / "bad_unet.onnx", output_size=160),
    }


def expected_rect(i: int) -> list[int]:
    x1, y1, size = 100 + 3 * i, 40 + 2 * i, 60 + i % 3
    return [x1, y1, x1 + size, y1 + size]


def landmark_text(rect: list[int]) -> str:
    """110 'x y' lines whose points 1, 31 and 52 give ``rect`` (as floats, to exercise truncation)."""
    x1, y1, x2, _ = rect
    points = [[x1 + 10.25, y1 + 5.5]] * 110
    points[1] = [x1 + 0.9, y1 - 20.0]
    points[31] = [x2 + 0.5, y1 - 22.0]
    points[52] = [x1 + 30.0, y1 + 0.75]
    return "\n".join(f"{x} {y}" for x, y in points) + "\n"


def frame_image(i: int) -> np.ndarray:
    """A distinct frame per index: a gradient plus a coloured square whose position encodes i."""
    image = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
    image[..., 0] = np.linspace(0, 255, WIDTH, dtype=np.uint8)[None, :]
    image[..., 1] = (20 * i) % 256
    image[20:60, 10 + 20 * i : 50 + 20 * i] = (0, 0, 255)
    return image


def write_synctalk_dataset(root: Path, count: int = FRAME_COUNT, features: bool = True) -> Path:
    (root / "full_body_img").mkdir(parents=True)
    (root / "landmarks").mkdir()
    for i in range(count):
        cv2.imwrite(str(root / "full_body_img" / f"{i}.jpg"), frame_image(i))
        (root / "landmarks" / f"{i}.lms").write_text(landmark_text(expected_rect(i)))
    if features:
        np.save(root / "aud_ave.npy", np.random.default_rng(0).random((count - 1, 512), dtype=np.float32))
    return root


def write_video(path: Path, count: int, size=(WIDTH, HEIGHT)) -> Path:
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height = size
        stream.pix_fmt = "yuv420p"
        for i in range(count):
            image = cv2.resize(frame_image(i), size)
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="bgr24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def decode_video(path: Path) -> list[np.ndarray]:
    """The frames as a player shows them (the exact BT.601/709 decode, not swscale's dark default)."""
    from lipsync_render.media.video import read_frames_bgr

    return list(read_frames_bgr(path))


def write_sanders_dataset(
    root: Path, models: dict, rects_file: str = "crop_rects.json", count: int = FRAME_COUNT
) -> Path:
    root.mkdir(parents=True)
    write_video(root / "full_body_video.mp4", count)
    rects = [expected_rect(i) for i in range(count)]
    if rects_file == "crop_rects.json":
        (root / rects_file).write_text(json.dumps(rects))
    else:
        (root / "cache").mkdir()
        entries = {str(i): {"rect": rect, "original_path": f"full_body_img/{i}.jpg"} for i, rect in enumerate(rects)}
        (root / rects_file).write_text(json.dumps(entries))
    np.save(root / "aud_ave.npy", np.random.default_rng(1).random((count - 1, 512), dtype=np.float32))
    (root / "checkpoint").mkdir()
    (root / "checkpoint" / "model_best.onnx").write_bytes(models["unet"].read_bytes())
    return root


def assert_nothing_left(dest: Path) -> None:
    assert not dest.exists()
    if dest.parent.exists():
        assert not list(dest.parent.glob(f".{dest.name}.*")), "staging directory left behind"


# --- landmarks and rectangles -----------------------------------------------------------------------


def test_golden_rects_are_reproduced_exactly(shared_dir):
    sanders = shared_dir / "golden" / "sanders"
    if not (sanders / "crop_rects.json").is_file():
        pytest.skip(f"golden sanders data not found in {sanders}")
    golden = np.array(json.loads((sanders / "crop_rects.json").read_text()))
    rects = landmark_rects(sanders / "landmarks", None, len(golden), sanders / "crop_rects.json")
    assert rects.shape == (523, 4)
    assert rects[0].tolist() == [532, 210, 714, 392]
    np.testing.assert_array_equal(rects, golden)


def test_read_landmarks_parses_float_then_truncates(tmp_path):
    path = tmp_path / "0.lms"
    path.write_text(landmark_text([532, 210, 714, 392]))
    landmarks = read_landmarks(path)
    assert landmarks.shape == (110, 2) and landmarks.dtype == np.int32
    assert landmarks[1].tolist() == [532, 190] and landmarks[0].tolist() == [542, 215]
    assert crop_rect(landmarks) == (532, 210, 714, 392)


def test_smooth_rects_stays_square_integer_and_inside():
    rng = np.random.default_rng(3)
    size = 60 + rng.integers(-4, 5, 40)
    x1 = np.clip(250 + rng.integers(-8, 9, 40), 0, None)  # some reach the right edge of a 320-wide frame
    y1 = rng.integers(0, 5, 40)  # hugging the top edge
    rects = np.stack([x1, y1, x1 + size, y1 + size], axis=1)
    rects[:, 2:] = np.minimum(rects[:, 2:], [[WIDTH, HEIGHT]])
    rects[:, 0] = rects[:, 2] - (rects[:, 3] - rects[:, 1])
    smoothed = smooth_rects(rects, 5, (WIDTH, HEIGHT))
    assert smoothed.shape == rects.shape and smoothed.dtype == np.int32
    assert ((smoothed[:, 2] - smoothed[:, 0]) == (smoothed[:, 3] - smoothed[:, 1])).all()
    assert (smoothed[:, :2] >= 0).all() and (smoothed[:, 2] <= WIDTH).all() and (smoothed[:, 3] <= HEIGHT).all()
    jitter = lambda r: np.abs(np.diff(r[:, 0])).mean()  # noqa: E731
    assert jitter(smoothed) < jitter(rects)
    np.testing.assert_array_equal(smooth_rects(rects, 0), rects)  # off by default


# --- building -----------------------------------------------------------------------------------------


def test_build_from_synctalk2d_layout(tmp_path, models):
    dataset = write_synctalk_dataset(tmp_path / "dataset")
    dest = build_package(tmp_path / "packages" / "demo", "demo", dataset, models["unet"], models["encoder"])
    assert validate_package(dest) == []
    package = load_package(dest)
    assert (package.frame_count, package.width, package.height) == (FRAME_COUNT, WIDTH, HEIGHT)
    for i in range(FRAME_COUNT):
        np.testing.assert_array_equal(package.frames[i], cv2.imread(str(dataset / "full_body_img" / f"{i}.jpg")))
    assert package.rects.tolist() == [expected_rect(i) for i in range(FRAME_COUNT)]
    np.testing.assert_array_equal(package.features, np.load(dataset / "aud_ave.npy"))
    source = package.manifest["source"]
    assert source["layout"] == "synctalk2d" and source["smoothing"] == 0
    assert source["dataset"] == str(dataset.resolve())


def test_build_with_video_replacing_the_jpeg_frames(tmp_path, models):
    dataset = write_synctalk_dataset(tmp_path / "dataset", features=False)
    video = write_video(tmp_path / "body.mp4", FRAME_COUNT)
    package = load_package(
        build_package(tmp_path / "pkg", "pkg", dataset, models["unet"], models["encoder"], video=video)
    )
    np.testing.assert_array_equal(package.frames, np.stack(decode_video(video)))
    assert package.rects.tolist() == [expected_rect(i) for i in range(FRAME_COUNT)]
    assert package.features is None
    assert package.manifest["source"]["frames"] == str(video.resolve())


@pytest.mark.parametrize("rects_file", ["crop_rects.json", "cache/crop_rectangles.json"])
def test_build_from_sanders_layout(tmp_path, models, rects_file):
    dataset = write_sanders_dataset(tmp_path / "sanders", models, rects_file)
    package = load_package(build_package(tmp_path / "pkg", "sanders", dataset, encoder=models["encoder"]))
    assert package.manifest["source"]["layout"] == "sanders"
    assert package.manifest["source"]["unet"] == str((dataset / "checkpoint" / "model_best.onnx").resolve())
    np.testing.assert_array_equal(package.frames, np.stack(decode_video(dataset / "full_body_video.mp4")))
    assert package.rects.tolist() == [expected_rect(i) for i in range(FRAME_COUNT)]
    np.testing.assert_array_equal(package.features, np.load(dataset / "aud_ave.npy"))


def test_sanders_layout_falls_back_to_landmarks_and_takes_video(tmp_path, models):
    dataset = write_sanders_dataset(tmp_path / "sanders", models, count=4)
    (dataset / "crop_rects.json").unlink()
    (dataset / "landmarks").mkdir()
    for i in range(4):
        (dataset / "landmarks" / f"{i}.lms").write_text(landmark_text(expected_rect(i)))
    other = write_video(tmp_path / "other.mp4", 4, size=(WIDTH + 32, HEIGHT))
    package = load_package(build_package(tmp_path / "pkg", "pkg", dataset, encoder=models["encoder"], video=other))
    assert package.manifest["source"]["layout"] == "sanders"
    assert package.manifest["source"]["rects"] == str((dataset / "landmarks").resolve())
    assert package.width == WIDTH + 32
    assert package.rects.tolist() == [expected_rect(i) for i in range(4)]


def test_build_with_smoothing(tmp_path, models):
    dataset = write_synctalk_dataset(tmp_path / "dataset", count=8, features=False)
    (dataset / "landmarks" / "0.lms").write_text(landmark_text([0, 0, 64, 64]))  # a jump to the corner
    package = load_package(build_package(tmp_path / "pkg", "pkg", dataset, models["unet"], models["encoder"], smooth=3))
    rects = package.rects
    assert ((rects[:, 2] - rects[:, 0]) == (rects[:, 3] - rects[:, 1])).all()
    assert (rects[:, :2] >= 0).all() and (rects[:, 2] <= WIDTH).all() and (rects[:, 3] <= HEIGHT).all()
    assert rects[0].tolist() != [0, 0, 64, 64]
    assert package.manifest["source"]["smoothing"] == 3


# --- errors ---------------------------------------------------------------------------------------------


def truncate_landmarks(dataset: Path) -> str:
    path = dataset / "landmarks" / "4.lms"
    path.write_text("\n".join(path.read_text().splitlines()[:60]))
    return "landmarks/4.lms"


def garble_landmarks(dataset: Path) -> str:
    path = dataset / "landmarks" / "5.lms"
    lines = path.read_text().splitlines()
    lines[7] = "12 abc"
    path.write_text("\n".join(lines))
    return "landmarks/5.lms"


def three_column_landmarks(dataset: Path) -> str:
    path = dataset / "landmarks" / "6.lms"
    path.write_text("\n".join(line + " 1" for line in path.read_text().splitlines()))
    return "landmarks/6.lms"


def resize_one_frame(dataset: Path) -> str:
    cv2.imwrite(str(dataset / "full_body_img" / "2.jpg"), np.zeros((HEIGHT + 8, WIDTH, 3), np.uint8))
    return "full_body_img/2.jpg"


def add_landmarks(dataset: Path) -> str:
    (dataset / "landmarks" / f"{FRAME_COUNT}.lms").write_text(landmark_text(expected_rect(0)))
    return "landmarks"


def leave_frame_gap(dataset: Path) -> str:
    (dataset / "full_body_img" / "7.jpg").unlink()
    return "full_body_img/7.jpg"


def push_rect_outside(dataset: Path) -> str:
    (dataset / "landmarks" / "4.lms").write_text(landmark_text([280, 150, 340, 210]))
    return "landmarks/4.lms"


def remove_frames(dataset: Path) -> str:
    for path in (dataset / "full_body_img").iterdir():
        path.unlink()
    return "full_body_img"


@pytest.mark.parametrize(
    "break_dataset",
    [
        truncate_landmarks,
        garble_landmarks,
        three_column_landmarks,
        resize_one_frame,
        add_landmarks,
        leave_frame_gap,
        push_rect_outside,
        remove_frames,
    ],
)
def test_dataset_errors_name_the_file_and_leave_nothing(tmp_path, models, break_dataset):
    dataset = write_synctalk_dataset(tmp_path / "dataset", features=False)
    culprit = break_dataset(dataset)
    dest = tmp_path / "packages" / "broken"
    with pytest.raises(PackageError) as error:
        build_package(dest, "broken", dataset, models["unet"], models["encoder"])
    message = str(error.value)
    assert str(dataset / culprit) in message and "\n" not in message
    assert_nothing_left(dest)


def test_model_not_fitting_the_contract(tmp_path, models):
    dataset = write_synctalk_dataset(tmp_path / "dataset", count=3, features=False)
    dest = tmp_path / "pkg"
    with pytest.raises(PackageError, match="does not fit the contract") as error:
        build_package(dest, "pkg", dataset, models["bad_unet"], models["encoder"])
    assert str(models["bad_unet"]) in str(error.value)
    with pytest.raises(PackageError, match="audio encoder model") as error:
        build_package(dest, "pkg", dataset, models["unet"], models["unet"])
    assert str(models["unet"]) in str(error.value)
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"not a model")
    with pytest.raises(PackageError, match="not a readable ONNX model"):
        build_package(dest, "pkg", dataset, garbage, models["encoder"])
    assert_nothing_left(dest)


def test_missing_dataset_and_missing_frames(tmp_path, models):
    with pytest.raises(PackageError, match="does not exist") as error:
        build_package(tmp_path / "pkg", "pkg", tmp_path / "nowhere", models["unet"], models["encoder"])
    assert str(tmp_path / "nowhere") in str(error.value)
    (tmp_path / "empty").mkdir()
    with pytest.raises(PackageError, match="has no frames") as error:
        build_package(tmp_path / "pkg", "pkg", tmp_path / "empty", models["unet"], models["encoder"])
    assert str(tmp_path / "empty") in str(error.value)
    assert_nothing_left(tmp_path / "pkg")


@pytest.mark.parametrize("video_frames", [FRAME_COUNT - 2, FRAME_COUNT + 2])
def test_video_frame_count_must_match_landmarks(tmp_path, models, video_frames):
    dataset = write_synctalk_dataset(tmp_path / "dataset", features=False)
    video = write_video(tmp_path / "body.mp4", video_frames)
    dest = tmp_path / "pkg"
    with pytest.raises(
        PackageError, match=f"has {video_frames} frames but .* has {FRAME_COUNT} landmark files"
    ) as error:
        build_package(dest, "pkg", dataset, models["unet"], models["encoder"], video=video)
    assert str(video) in str(error.value)
    assert_nothing_left(dest)


def test_sanders_rect_count_must_match_video(tmp_path, models):
    dataset = write_sanders_dataset(tmp_path / "sanders", models, count=5)
    (dataset / "crop_rects.json").write_text(json.dumps([expected_rect(i) for i in range(7)]))
    dest = tmp_path / "pkg"
    with pytest.raises(PackageError, match="has 5 frames") as error:
        build_package(dest, "pkg", dataset, encoder=models["encoder"])
    assert str(dataset / "crop_rects.json") in str(error.value)
    assert_nothing_left(dest)


def test_refuses_to_replace_a_directory_that_is_not_a_package(tmp_path, models):
    dataset = write_synctalk_dataset(tmp_path / "dataset", count=3, features=False)
    (tmp_path / "precious").mkdir()
    (tmp_path / "precious" / "notes.txt").write_text("keep me")
    with pytest.raises(PackageError, match="not a model package"):
        build_package(tmp_path / "precious", "precious", dataset, models["unet"], models["encoder"])
    assert (tmp_path / "precious" / "notes.txt").read_text() == "keep me"


# --- CLI ---------------------------------------------------------------------------------------------------


def test_cli_build_writes_packages_name_and_prints_a_summary(tmp_path, models, monkeypatch):
    dataset = write_synctalk_dataset(tmp_path / "dataset", count=4)
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(
        app,
        [
            "package",
            "build",
            "demo",
            "--from",
            str(dataset),
            "--unet",
            str(models["unet"]),
            "--encoder",
            str(models["encoder"]),
        ],
    )
    assert result.exit_code == 0, result.output
    assert validate_package(tmp_path / "packages" / "demo") == []
    assert "frames:   4 x 320x180" in result.output and "features: aud_ave.npy 3x512" in result.output
    assert "size 60..62" in result.output

    result = CliRunner().invoke(
        app,
        [
            "package",
            "build",
            "other",
            "--from",
            str(dataset),
            "--out-dir",
            str(tmp_path / "out"),
            "--unet",
            str(models["unet"]),
            "--encoder",
            str(models["encoder"]),
            "--smooth",
            "3",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "smoothed over 3 frames" in result.output
    assert load_package(tmp_path / "out" / "other").name == "other"


def test_cli_build_error_is_one_line_without_traceback(tmp_path, models, monkeypatch):
    dataset = write_synctalk_dataset(tmp_path / "dataset", count=4, features=False)
    path = dataset / "landmarks" / "2.lms"
    path.write_text("\n".join(path.read_text().splitlines()[:60]))  # malformed, not a missing face
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(
        app,
        [
            "package",
            "build",
            "demo",
            "--from",
            str(dataset),
            "--unet",
            str(models["unet"]),
            "--encoder",
            str(models["encoder"]),
        ],
    )
    assert result.exit_code == PackageError.exit_code
    assert "Traceback" not in result.output and isinstance(result.exception, SystemExit)
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "2.lms" in lines[0]
    assert_nothing_left(tmp_path / "packages" / "demo")


def test_cli_build_without_a_model(tmp_path, models, monkeypatch):
    dataset = write_synctalk_dataset(tmp_path / "dataset", count=3, features=False)
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(
        app, ["package", "build", "demo", "--from", str(dataset), "--encoder", str(models["encoder"])]
    )
    assert result.exit_code != 0
    assert "--unet" in result.output and "Traceback" not in result.output


def test_cli_build_with_a_jpeg_frames_store(tmp_path, models):
    """The dataset's own JPEG frames, re-stored at quality 95, stay within 38 dB of what cv2.imread gives."""
    dataset = write_synctalk_dataset(tmp_path / "dataset", count=4, features=False)
    dest = tmp_path / "out" / "demo"
    command = ["package", "build", str(dest), "--from", str(dataset), "--unet", str(models["unet"])]
    result = CliRunner().invoke(app, [*command, "--encoder", str(models["encoder"]), "--frames-store", "jpeg:95"])
    assert result.exit_code == 0, result.output
    assert "jpeg:95 store" in result.output
    package = load_package(dest)
    assert package.manifest["frames_store"] == {"codec": "jpeg", "quality": 95, "tile": 256}
    for i in range(4):
        source = cv2.imread(str(dataset / "full_body_img" / f"{i}.jpg")).astype(np.float64)
        assert 10 * np.log10(255**2 / np.mean((package.frames[i] - source) ** 2)) >= 38


# --- export-onnx ------------------------------------------------------------------------------------------


def test_export_without_torch_explains_the_extra(tmp_path, monkeypatch):
    from lipsync_render import torch_networks
    from lipsync_render.package import export

    monkeypatch.setitem(sys.modules, "torch", None)  # makes `import torch` raise ImportError
    monkeypatch.setattr(torch_networks, "_modules", None)
    with pytest.raises(LipsyncError, match=r"lipsync-render\[export\]"):
        export.export_onnx(tmp_path, unet=tmp_path / "unet.pth")


def randomize_batchnorm(model, torch) -> None:
    """Non-trivial BN statistics, so that the export's Conv+BN folding is really exercised."""
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.2, 0.2)
            module.running_var.uniform_(0.5, 1.5)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.2, 0.2)


def test_export_onnx_matches_torch(tmp_path):
    torch = pytest.importorskip("torch")
    import onnxruntime as ort

    from lipsync_render.torch_networks import audio_encoder_model, unet_model

    torch.manual_seed(0)
    unet, encoder = unet_model().eval(), audio_encoder_model().eval()
    assert sum(p.numel() for p in unet.parameters()) == 12_186_935  # spec §4.4
    assert sum(p.numel() for p in encoder.parameters()) == 2_812_672  # spec §2
    randomize_batchnorm(unet, torch)
    randomize_batchnorm(encoder, torch)
    torch.save(unet.state_dict(), tmp_path / "unet.pth")
    # Upstream encoder checkpoints lack the 'audio_encoder.' prefix (spec §2).
    assert all(k.startswith("audio_encoder.") for k in encoder.state_dict())
    torch.save({k.removeprefix("audio_encoder."): v for k, v in encoder.state_dict().items()}, tmp_path / "enc.pth")

    out = tmp_path / "onnx"
    result = CliRunner().invoke(
        app,
        [
            "package",
            "export-onnx",
            "--unet",
            str(tmp_path / "unet.pth"),
            "--encoder",
            str(tmp_path / "enc.pth"),
            "-o",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "max |onnx - fp64|" in result.output
    assert check_model(out / "unet.onnx", UNET)[0] == []
    assert check_model(out / "audio_encoder.onnx", AUDIO_ENCODER)[0] == []
    assert [op.version for op in onnx.load(str(out / "unet.onnx")).opset_import if op.domain in ("", "ai.onnx")] == [17]

    rng = np.random.default_rng(7)
    visual = rng.random((3, 6, 320, 320), dtype=np.float32)
    audio = rng.random((3, 32, 16, 16), dtype=np.float32) * 3
    mel = rng.uniform(-4, 4, (5, 1, 80, 16)).astype(np.float32)
    with torch.no_grad():
        expected_image = unet(torch.from_numpy(visual), torch.from_numpy(audio)).numpy()
        expected_features = encoder(torch.from_numpy(mel)).numpy()
    session = ort.InferenceSession(str(out / "unet.onnx"), providers=["CPUExecutionProvider"])
    image = session.run(["output"], {"input": visual, "audio": audio})[0]
    session = ort.InferenceSession(str(out / "audio_encoder.onnx"), providers=["CPUExecutionProvider"])
    features = session.run(["audio_features"], {"mel_spectrogram": mel})[0]
    assert np.abs(image - expected_image).max() <= 1e-4
    assert np.abs(features - expected_features).max() <= 1e-4
    assert features.shape == (5, 512)

    # A checkpoint of the wrong network: a clear one-line error naming it, nothing written.
    result = CliRunner().invoke(
        app, ["package", "export-onnx", "--unet", str(tmp_path / "enc.pth"), "-o", str(tmp_path / "x")]
    )
    assert result.exit_code != 0 and "Traceback" not in result.output
    assert "enc.pth" in result.output and "does not fit" in result.output
    assert not (tmp_path / "x" / "unet.onnx").exists()


# --- end to end --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("features", ["audio", "package"])
def test_built_package_renders_end_to_end(models, tmp_path, features):
    """A package built from a SyncTalk_2D-layout dataset renders; outside the crops the frames are the dataset's."""
    import soundfile as sf

    from lipsync_render.media.video import probe
    from lipsync_render.options import RenderOptions, SessionOptions
    from lipsync_render.rendering.frame_order import frame_schedule
    from lipsync_render.rendering.renderer import Renderer

    dataset = write_synctalk_dataset(tmp_path / "dataset")
    built = build_package(tmp_path / "pkg", "built", dataset, unet=models["unet"], encoder=models["encoder"])
    speech, rate = sf.read(Path(__file__).resolve().parents[2] / "examples" / "hello.wav", dtype="int16")
    sf.write(tmp_path / "speech.wav", speech[: int(0.8 * rate)], rate)
    options = RenderOptions(features=features, frames_dir=tmp_path / "frames", frames_format="png")
    with Renderer(built, SessionOptions(workers=0)) as renderer:
        result = renderer.render(tmp_path / "speech.wav", tmp_path / "out.mp4", options)
    info = probe(tmp_path / "out.mp4")
    assert result.frames == info.frames == 20 and (info.width, info.height) == (WIDTH, HEIGHT)
    package = load_package(built)
    for k, index in enumerate(frame_schedule(20, package.frame_count)):
        written = cv2.imread(str(tmp_path / "frames" / f"{k:06d}.png"))
        x1, y1, x2, y2 = package.rects[index]
        outside = np.ones((HEIGHT, WIDTH), bool)
        outside[y1:y2, x1:x2] = False
        source = cv2.imread(str(dataset / "full_body_img" / f"{index}.jpg"))
        assert np.array_equal(written[outside], source[outside])


def test_export_refused_by_parity_names_the_override(tmp_path):
    torch = pytest.importorskip("torch")
    from lipsync_render.torch_networks import unet_model

    torch.manual_seed(0)
    torch.save(unet_model().state_dict(), tmp_path / "unet.pth")
    args = ["package", "export-onnx", "--unet", str(tmp_path / "unet.pth"), "-o", str(tmp_path / "strict")]
    result = CliRunner().invoke(app, [*args, "--parity-tolerance", "1e-12"])
    assert result.exit_code == 4 and "Traceback" not in result.output
    assert "float64" in result.output and "--parity-tolerance" in result.output
    assert not (tmp_path / "strict" / "unet.onnx").exists()


@pytest.mark.parametrize("tolerance", ["inf", "nan", "-1"])
def test_export_parity_tolerance_must_be_a_finite_non_negative_number(tmp_path, tolerance):
    args = ["package", "export-onnx", "--unet", str(tmp_path / "u.pth"), "-o", str(tmp_path / "x")]
    result = CliRunner().invoke(app, [*args, f"--parity-tolerance={tolerance}"])
    assert result.exit_code == 2 and "--parity-tolerance" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "x").exists()


# --- frames without a face ----------------------------------------------------------------------------------


def test_missing_and_degenerate_landmarks_become_null_rectangles(tmp_path, models):
    dataset = write_synctalk_dataset(tmp_path / "dataset", features=False)
    (dataset / "landmarks" / "3.lms").unlink()  # no landmarks: the detector found no face
    (dataset / "landmarks" / "5.lms").write_text("nan nan\n" * 110)  # not finite
    (dataset / "landmarks" / "8.lms").write_text(landmark_text([40, 30, 40, 30]))  # an empty rectangle
    dest = build_package(tmp_path / "pkg", "pkg", dataset, models["unet"], models["encoder"], smooth=3)
    rows = json.loads((dest / "crop_rects.json").read_text())
    assert [i for i, row in enumerate(rows) if row is None] == [3, 5, 8]
    package = load_package(dest)
    assert package.manifest["format_version"] == 3
    assert np.flatnonzero(~package.faces).tolist() == [3, 5, 8]
    assert package.rects[3].tolist() == package.rects[2].tolist()  # filled from the nearest face
    result = CliRunner().invoke(app, ["package", "inspect", str(dest)])
    assert result.exit_code == 0 and "3 of 12 frames have no face" in result.output
    result = CliRunner().invoke(app, ["package", "validate", str(dest)])
    assert result.exit_code == 0 and "3 of 12 frames have no face" in result.output


def test_build_prints_how_many_frames_have_no_face(tmp_path, models, monkeypatch):
    dataset = write_synctalk_dataset(tmp_path / "dataset", count=4, features=False)
    (dataset / "landmarks" / "1.lms").unlink()
    monkeypatch.chdir(tmp_path)
    args = ["package", "build", "demo", "--from", str(dataset), "--unet", str(models["unet"])]
    result = CliRunner().invoke(app, [*args, "--encoder", str(models["encoder"])])
    assert result.exit_code == 0, result.output
    assert "faceless: 1 of 4 frames have no face" in result.output


def test_a_dataset_without_any_face_is_refused(tmp_path, models):
    dataset = write_synctalk_dataset(tmp_path / "dataset", count=4, features=False)
    for path in (dataset / "landmarks").iterdir():
        path.unlink()
    with pytest.raises(PackageError, match=r"No frame of .* has a face"):
        build_package(tmp_path / "pkg", "pkg", dataset, models["unet"], models["encoder"])
    assert not (tmp_path / "pkg").exists()


def test_smoothing_keeps_null_rectangles_and_smooths_each_run():
    rects = np.array([[10, 10, 50, 50], [12, 10, 52, 50], [-1, -1, -1, -1], [30, 30, 70, 70], [32, 30, 72, 70]])
    smoothed = smooth_rects(rects, 3)
    assert smoothed[2].tolist() == [-1, -1, -1, -1]
    assert smoothed[0].tolist() == smoothed[1].tolist() == [11, 10, 51, 50]  # not pulled towards frame 3
