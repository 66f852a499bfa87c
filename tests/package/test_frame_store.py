"""Frames stores: npy round trip exact, JPEG within its PSNR bound, crops equal to whole frames, hostile stores."""

import json
import pickle
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from lipsync_render.cli.app import app
from lipsync_render.errors import PackageError
from lipsync_render.package import check_package, load_package, sha256_file
from lipsync_render.package.frame_store import JpegFrameStore, NpyFrameStore, jpeg_size, tile_boxes
from lipsync_render.package.writer import write_package
from lipsync_render.store_choice import parse_frames_store
from lipsync_render.synth.avatar import avatar_frames, avatar_rects, build_models, synth_package

runner = CliRunner()
WIDTH, HEIGHT, COUNT = 640, 360, 6
JPEG_PSNR_BOUND = 37.0  # dB, the jpeg (quality 90) store against its source frames; synthetic frames measure ~40


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255**2 / mse)


@pytest.fixture(scope="module")
def source() -> np.ndarray:
    return np.stack(list(avatar_frames(COUNT, WIDTH, HEIGHT, seed=5)))


def make_package(dest: Path, frames: np.ndarray, store: str) -> Path:
    unet, encoder = build_models(tiny=True)
    rects = avatar_rects(len(frames), frames.shape[2], frames.shape[1])
    return write_package(
        dest, dest.name, iter(frames), len(frames), rects, unet, encoder, frames_store=parse_frames_store(store)
    )


@pytest.fixture(scope="module")
def jpeg_package(source, tmp_path_factory) -> Path:
    return make_package(tmp_path_factory.mktemp("stores") / "jpeg", source, "jpeg")


@pytest.fixture
def hostile(jpeg_package, tmp_path) -> Path:
    """A private copy of the JPEG package to damage."""
    return Path(shutil.copytree(jpeg_package, tmp_path / "hostile"))


def test_npy_round_trip_is_exact_and_memory_mapped(source, tmp_path):
    package = load_package(make_package(tmp_path / "npy", source, "npy"))
    assert isinstance(package.frames, NpyFrameStore) and isinstance(package.frames.array, np.memmap)
    np.testing.assert_array_equal(np.asarray(package.frames), source)
    frame = package.frames[2]
    assert not frame.flags.owndata and np.shares_memory(frame, package.frames.array)  # zero-copy views
    assert package.manifest["frames_store"] == {"codec": "npy"} and package.manifest["format_version"] == 2


def test_jpeg_store_is_within_its_psnr_bound_and_smaller(source, jpeg_package):
    package = load_package(jpeg_package)
    assert isinstance(package.frames, JpegFrameStore) and package.frames.shape == source.shape
    for index in range(COUNT):
        frame = package.frames[index]
        assert frame.shape == source.shape[1:] and frame.dtype == np.uint8
        assert psnr(frame, source[index]) >= JPEG_PSNR_BOUND
    assert package.frames.disk_bytes < source.nbytes / 8
    assert package.manifest["frames_store"] == {"codec": "jpeg", "quality": 90, "tile": 256}
    assert set(package.manifest["checksums"]) >= {"frames.jpg.bin", "frames.index.npy"}


def test_lower_quality_is_smaller_and_further_from_the_source(source, jpeg_package, tmp_path):
    low = load_package(make_package(tmp_path / "low", source, "jpeg:40"))
    high = load_package(jpeg_package)
    assert low.frames.disk_bytes < high.frames.disk_bytes
    assert psnr(low.frames[1], source[1]) < psnr(high.frames[1], source[1])


@pytest.mark.parametrize("rect", [(0, 0, 40, 40), (230, 100, 290, 160), (250, 250, 360, 360), (600, 320, 640, 360)])
def test_rect_pixels_equal_the_whole_decoded_frame(jpeg_package, rect):
    """Prepare decodes only the tiles under the rectangle; the crop must be exactly the full decode's."""
    store = load_package(jpeg_package).frames
    pixels, (x1, y1, x2, y2) = store.rect_pixels(3, rect)
    X1, Y1, X2, Y2 = rect
    np.testing.assert_array_equal(pixels[y1:y2, x1:x2], store[3][Y1:Y2, X1:X2])
    assert pixels.size < store[3].size or rect[2] - rect[0] > 256


def test_store_pickles_as_its_paths_for_worker_processes(jpeg_package):
    store = load_package(jpeg_package).frames
    again = pickle.loads(pickle.dumps(store))
    assert len(pickle.dumps(store)) < 2000
    np.testing.assert_array_equal(again[4], store[4])


def test_tiles_cover_the_frame_once():
    covered = np.zeros((HEIGHT, WIDTH), int)
    for y0, y1, x0, x1 in tile_boxes(WIDTH, HEIGHT, 256):
        covered[y0:y1, x0:x1] += 1
    assert (covered == 1).all()


def test_jpeg_size_reads_the_frame_header():
    ok, code = cv2.imencode(".jpg", np.zeros((24, 40, 3), np.uint8))
    assert ok and jpeg_size(code) == (40, 24)
    assert jpeg_size(code[:-2]) is None and jpeg_size(np.frombuffer(b"\xff\xd8nonsense\xff\xd9", np.uint8)) is None


def test_old_version_npy_package_still_loads(source, tmp_path):
    """A format version 1 manifest (no frames_store entry) is an npy package."""
    path = make_package(tmp_path / "old", source, "npy")
    data = json.loads((path / "package.json").read_text())
    data["format_version"] = 1
    del data["frames_store"]
    (path / "package.json").write_text(json.dumps(data))
    package = load_package(path)
    assert isinstance(package.frames, NpyFrameStore)
    np.testing.assert_array_equal(package.frames[5], source[5])
    assert runner.invoke(app, ["package", "validate", str(path)]).exit_code == 0


def rewrite(path: Path, data: bytes | None = None, offsets: np.ndarray | None = None, manifest=None) -> None:
    """Replace store files (and/or edit the manifest), keeping the checksums consistent: the attack is the content."""
    if data is not None:
        (path / "frames.jpg.bin").write_bytes(data)
    if offsets is not None:
        np.save(path / "frames.index.npy", offsets)
    entry = json.loads((path / "package.json").read_text())
    if manifest is not None:
        manifest(entry)
    entry["checksums"] = {rel: sha256_file(path / rel) for rel in entry["checksums"] if (path / rel).is_file()}
    (path / "package.json").write_text(json.dumps(entry))


def offsets_of(path: Path) -> np.ndarray:
    return np.load(path / "frames.index.npy").copy()


def assert_refused(path: Path, *fragments: str, decode: bool = False) -> None:
    """One sentence naming the file from the loader (or from validate, which decodes every frame), exit 4."""
    problems = check_package(path, decode_frames=decode).problems
    assert problems and all(f in problems[0] for f in fragments), problems
    if not decode:
        with pytest.raises(PackageError, match="frames"):
            load_package(path)
    result = runner.invoke(app, ["package", "validate", str(path)])
    assert result.exit_code == 4 and all(f in result.stderr for f in fragments), result.stderr
    assert "Traceback" not in result.stderr


def test_truncated_store_is_refused(hostile):
    data = (hostile / "frames.jpg.bin").read_bytes()
    rewrite(hostile, data=data[: len(data) // 2])
    assert_refused(hostile, "frames.index.npy", "rise strictly from 0")


def test_offsets_past_the_end_are_refused(hostile):
    offsets = offsets_of(hostile)
    offsets[-1] += 1 << 40
    rewrite(hostile, offsets=offsets)
    assert_refused(hostile, "frames.index.npy", "file's size")


@pytest.mark.parametrize("change", ["overlap", "decrease", "negative"])
def test_non_monotonic_or_overlapping_offsets_are_refused(hostile, change):
    offsets = offsets_of(hostile)
    if change == "overlap":
        offsets[5] = offsets[4]
    elif change == "decrease":
        offsets[5], offsets[6] = offsets[6], offsets[5]
    else:
        offsets[0] = -10
    rewrite(hostile, offsets=offsets)
    assert_refused(hostile, "frames.index.npy", "rise strictly")


@pytest.mark.parametrize("wrong", ["count", "dtype", "huge", "2d", "garbage"])
def test_index_of_the_wrong_shape_or_type_is_refused(hostile, wrong):
    offsets = offsets_of(hostile)
    if wrong == "count":  # one frame's tiles short: index count != frame_count
        rewrite(hostile, offsets=offsets[: -len(tile_boxes(WIDTH, HEIGHT, 256))])
    elif wrong == "dtype":
        rewrite(hostile, offsets=offsets.astype(np.float64))
    elif wrong == "huge":  # a header promising far more entries than the file holds
        with open(hostile / "frames.index.npy", "wb") as f:
            np.lib.format.write_array_header_1_0(f, {"descr": "<i8", "fortran_order": False, "shape": (10**12,)})
            f.write(offsets.tobytes())
        rewrite(hostile)
    elif wrong == "2d":
        rewrite(hostile, offsets=np.stack([offsets, offsets]))
    else:
        (hostile / "frames.index.npy").write_bytes(b"not an npy file at all")
        rewrite(hostile)
    assert_refused(hostile, "frames.index.npy")


def test_tile_that_is_not_a_jpeg_is_refused(hostile):
    data = bytearray((hostile / "frames.jpg.bin").read_bytes())
    offsets = offsets_of(hostile)
    data[offsets[1] : offsets[1] + 2] = b"\x00\x00"  # frame 0, tile 1 loses its start-of-image marker
    rewrite(hostile, data=bytes(data))
    assert_refused(hostile, "frames.jpg.bin", "frame 0, tile 1", "not a JPEG")


def test_tile_of_the_wrong_size_is_refused(hostile):
    """A later frame's tile replaced by a valid JPEG of another size: load decodes frame 0 only, validate finds it."""
    data = (hostile / "frames.jpg.bin").read_bytes()
    offsets = offsets_of(hostile)
    k = 4 * len(tile_boxes(WIDTH, HEIGHT, 256)) + 2
    _, other = cv2.imencode(".jpg", np.zeros((40, 30, 3), np.uint8))
    data = data[: offsets[k]] + other.tobytes() + data[offsets[k + 1] :]
    offsets[k + 1 :] += len(other) - (offsets[k + 1] - offsets[k])
    rewrite(hostile, data=data, offsets=offsets)
    assert load_package(hostile)  # frame 0 is fine
    assert_refused(hostile, "frames.jpg.bin", "frame 4, tile 2", "30x40 JPEG", decode=True)
    with pytest.raises(PackageError, match="frame 4, tile 2"):
        load_package(hostile).frames[4]


def test_frame_that_fails_to_decode_is_refused(hostile):
    data = bytearray((hostile / "frames.jpg.bin").read_bytes())
    offsets = offsets_of(hostile)
    start = offsets[0]
    header = bytes(data[start : start + 600])
    sos = header.index(b"\xff\xda")
    data[start + sos : offsets[1] - 2] = b"\xff" * (offsets[1] - 2 - start - sos)  # scan replaced by fill bytes
    rewrite(hostile, data=bytes(data))
    assert_refused(hostile, "frames.jpg.bin", "frame 0, tile 0")


@pytest.mark.parametrize(
    "change, fragment",
    [
        (lambda m: m["frames_store"].update(codec="png"), "'frames_store'"),
        (lambda m: m["frames_store"].update(quality=0), "quality 0"),
        (lambda m: m["frames_store"].update(tile=100), "tile size 100"),
        (lambda m: m["files"].pop("frames_index"), "'frames_index'"),
        (lambda m: m.pop("frames_store"), "'frames_store'"),
    ],
)
def test_bad_frames_store_entry_is_refused(hostile, change, fragment):
    rewrite(hostile, manifest=change)
    assert_refused(hostile, "package.json", fragment)


def test_changed_store_file_fails_its_checksum(hostile):
    data = bytearray((hostile / "frames.jpg.bin").read_bytes())
    data[1000] ^= 0xFF
    (hostile / "frames.jpg.bin").write_bytes(bytes(data))
    problems = check_package(hostile).problems
    assert any("frames.jpg.bin does not match its checksum" in p for p in problems)


@pytest.mark.parametrize("value", ["jpeg:0", "jpeg:101", "jpeg:abc", "jpeg:", "png", "npy:90"])
def test_bad_frames_store_option_exits_2_before_writing(tmp_path, value):
    dest = tmp_path / "never"
    result = runner.invoke(app, ["package", "synth", str(dest), "--frames", "2", "--tiny", "--frames-store", value])
    assert result.exit_code == 2 and "--frames-store" in result.stderr and "Traceback" not in result.stderr
    assert not dest.exists() and list(tmp_path.iterdir()) == []
    result = runner.invoke(app, ["package", "build", str(dest), "--from", str(tmp_path), "--frames-store", value])
    assert result.exit_code == 2 and not dest.exists()


def test_inspect_shows_the_store_and_its_size(jpeg_package):
    result = runner.invoke(app, ["package", "inspect", str(jpeg_package)])
    assert result.exit_code == 0
    line = next(line for line in result.stdout.splitlines() if line.startswith("store"))
    assert "jpeg:90" in line and "frames.jpg.bin" in line and "MiB a frame" in line


def test_synth_writes_a_jpeg_package(tmp_path):
    path = synth_package(
        tmp_path / "s", frames=3, size=(320, 240), tiny=True, frames_store=parse_frames_store("jpeg:75")
    )
    assert load_package(path).manifest["frames_store"]["quality"] == 75
