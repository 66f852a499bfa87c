"""Renders from a JPEG frames store: within tolerance of the npy package's, exact to the decoded frames outside the
rectangle, and a frame that cannot be decoded mid-render fails with exit 4 and no output."""

import json
import shutil

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from lipsync_render.cli.app import app
from lipsync_render.options import RenderOptions, SessionOptions
from lipsync_render.package import load_package, sha256_file
from lipsync_render.package.frame_store import tile_boxes
from lipsync_render.rendering.frame_order import frame_schedule
from lipsync_render.rendering.renderer import Renderer
from lipsync_render.store_choice import parse_frames_store
from lipsync_render.synth.avatar import synth_package

RENDER_PSNR_BOUND = 37.0  # dB, each composited frame of the jpeg (quality 90) package vs the npy one's; ~40 measured
FRAMES = 33  # ceil(1.3 s * 25)


@pytest.fixture(scope="module")
def jpeg_twin(tmp_path_factory):
    """The tiny package's frames, models and rectangles (same seed), stored as JPEG."""
    dest = tmp_path_factory.mktemp("jpeg") / "tiny-jpeg"
    return synth_package(dest, frames=12, tiny=True, seed=3, frames_store=parse_frames_store("jpeg"))


def render_frames(package, wav, out, workers):
    out.mkdir()
    options = RenderOptions(frames_dir=out / "frames", frames_format="png")
    with Renderer(package, SessionOptions(batch_size=4, workers=workers, precision="fp32")) as renderer:
        result = renderer.render(wav, out / "out.mp4", options)
    assert result.status == "ok" and result.frames == FRAMES
    return [cv2.imread(str(out / "frames" / f"{k:06d}.png")) for k in range(FRAMES)]


@pytest.mark.parametrize("workers", [0, 1])
def test_jpeg_package_renders_within_tolerance_of_npy(tiny_package, jpeg_twin, short_wav, tmp_path, workers):
    npy = render_frames(tiny_package, short_wav, tmp_path / "npy", workers)
    jpeg = render_frames(jpeg_twin, short_wav, tmp_path / "jpeg", workers)
    package = load_package(jpeg_twin)
    schedule = frame_schedule(FRAMES, package.frame_count)
    for k, (a, b) in enumerate(zip(npy, jpeg, strict=True)):
        mse = np.mean((a.astype(np.float64) - b) ** 2)
        assert 10 * np.log10(255**2 / max(mse, 1e-12)) >= RENDER_PSNR_BOUND, f"frame {k}"
        index = schedule[k]
        decoded = package.frames[index]
        x1, y1, x2, y2 = package.rects[index]
        outside = np.ones(decoded.shape[:2], bool)
        outside[y1:y2, x1:x2] = False
        assert np.array_equal(b[outside], decoded[outside]), f"frame {k} differs from the store outside the rect"


def test_undecodable_frame_mid_render_fails_with_exit_4(jpeg_twin, short_wav, tmp_path):
    """Frame 0 decodes (so the package loads); frame 5 does not: the worker's error ends the render."""
    path = shutil.copytree(jpeg_twin, tmp_path / "broken")
    offsets = np.load(path / "frames.index.npy")
    k = 5 * len(tile_boxes(1280, 720, 256)) + 7
    data = bytearray((path / "frames.jpg.bin").read_bytes())
    data[offsets[k] : offsets[k] + 2] = b"\x00\x00"
    (path / "frames.jpg.bin").write_bytes(bytes(data))
    manifest = json.loads((path / "package.json").read_text())
    manifest["checksums"]["frames.jpg.bin"] = sha256_file(path / "frames.jpg.bin")
    (path / "package.json").write_text(json.dumps(manifest))
    output = tmp_path / "out.mp4"
    result = CliRunner().invoke(app, ["render", str(short_wav), "--model", str(path), "-o", str(output)])
    assert result.exit_code == 4, result.stderr
    assert "frames.jpg.bin: frame 5, tile 7" in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) <= 2
    assert not output.exists() and [p.name for p in tmp_path.iterdir()] == ["broken"]
