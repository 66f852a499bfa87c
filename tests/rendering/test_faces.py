"""Frames without a face (null rectangles): shown as the package frame, the UNet never run for them."""

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from lipsync_render.options import RenderOptions, SessionOptions
from lipsync_render.package import load_package
from lipsync_render.rendering.faces import still_weights
from lipsync_render.rendering.frame_order import frame_schedule
from lipsync_render.rendering.renderer import Renderer


def test_still_weights_are_one_where_the_package_frame_has_no_face():
    faces = np.array([True, False, True])
    schedule = np.array([0, 1, 2, 1, 0])
    assert list(still_weights(iter([0.0, 0.0, 0.25, 0.5, 1.0]), schedule, faces)) == [0.0, 1.0, 0.25, 1.0, 1.0]
    assert list(still_weights(iter([0.0] * 9), schedule, None)) == [0.0] * 5


def faceless_copy(tiny_package: Path, dest: Path, every: int = 7) -> Path:
    """The tiny package with every ``every``-th frame's rectangle null (format version 3)."""
    path = Path(shutil.copytree(tiny_package, dest))
    rects = json.loads((path / "crop_rects.json").read_text())
    (path / "crop_rects.json").write_text(json.dumps([None if i % every == 0 else r for i, r in enumerate(rects)]))
    manifest = json.loads((path / "package.json").read_text())
    manifest["format_version"] = 3
    manifest["checksums"].pop("crop_rects.json")
    (path / "package.json").write_text(json.dumps(manifest))
    return path


def render_pngs(package: Path, audio: Path, out: Path, silence: str) -> tuple[list[np.ndarray], object]:
    out.mkdir()
    options = RenderOptions(frames_dir=out, frames_format="png", silence=silence)
    with Renderer(package, SessionOptions(precision="fp32", batch_size=4, workers=1)) as renderer:
        result = renderer.render(audio, out / "render.mp4", options)
    return [cv2.imread(str(p)) for p in sorted(out.glob("*.png"))], result


@pytest.mark.parametrize("silence", ["keep", "idle"])
def test_every_seventh_frame_faceless_renders_the_package_frame(tiny_package, short_wav, tmp_path, silence):
    faceless = faceless_copy(tiny_package, tmp_path / "faceless")
    package = load_package(faceless)
    assert np.flatnonzero(~package.faces).tolist() == [0, 7]
    before, plain = render_pngs(tiny_package, short_wav, tmp_path / "before", silence)
    after, result = render_pngs(faceless, short_wav, tmp_path / "after", silence)
    assert len(before) == len(after) == result.frames == 33  # the audio keeps its pace
    schedule = frame_schedule(len(after), package.frame_count)
    skipped = [n for n in range(len(after)) if not package.faces[schedule[n]]]
    assert skipped  # no UNet prediction for them: counted with the idle frames
    if silence == "keep":
        assert plain.idle_frames == 0 and result.idle_frames == len(skipped)
    else:
        assert result.idle_frames >= max(len(skipped), plain.idle_frames)
    for number, (old, new) in enumerate(zip(before, after)):
        if number in skipped:
            np.testing.assert_array_equal(new, np.asarray(package.frames[schedule[number]]))
        else:
            np.testing.assert_array_equal(new, old)
