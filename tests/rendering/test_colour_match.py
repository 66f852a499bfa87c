"""--colour-match: the fit on its own, and renders of a model with a known cast and of a cast-free one."""

from pathlib import Path

import cv2
import numpy as np
import pytest
import soundfile as sf

from lipsync_render.contract import ROI
from lipsync_render.model_input import crop_328
from lipsync_render.options import RenderOptions, SessionOptions
from lipsync_render.package import load_package
from lipsync_render.rendering.colour_match import ColourMatcher, Correction, fit, limited, ring_mask
from lipsync_render.rendering.frame_order import frame_schedule
from lipsync_render.rendering.renderer import Renderer

EXAMPLES_DIR = Path(__file__).resolve().parents[2] / "examples"


def test_ring_is_the_region_outside_the_mouth_mask():
    ring = ring_mask()
    assert ring.sum() == 320 * 320 - 305 * 310
    assert ring[0].all() and ring[:, 0].all() and ring[-10:].all() and not ring[5:310, 5:315].any()


def test_fit_undoes_a_constant_cast_and_leaves_a_clean_ring_alone():
    rng = np.random.default_rng(0)
    original = rng.integers(60, 200, (7850, 3)).astype(np.uint8)
    cast = np.clip(original.astype(int) + [-15, 4, 12], 0, 255).astype(np.uint8)
    corrected = limited(*fit(cast, original), cast, original).apply(cast[None])[0]
    assert np.abs(corrected.astype(int) - original).mean() < 0.6
    assert limited(*fit(original, original), original, original).is_identity


def test_a_wild_fit_is_limited_and_never_makes_the_ring_worse():
    rng = np.random.default_rng(1)
    original = rng.integers(0, 256, (7850, 3)).astype(np.uint8)
    gain, offset = fit(np.full_like(original, 3), original)  # a flat prediction: no gain, a bounded offset
    assert (gain == 1).all() and (np.abs(offset) <= 48).all()
    wild = limited(np.array([3.0, 0.1, 1.0]), np.array([200.0, -200.0, 0.0]), original, original)
    assert wild.is_identity  # every channel would get worse, so each is reset


def test_matcher_smooths_in_frame_order():
    matcher = ColourMatcher(smoothing=0.5)
    crop = np.zeros((328, 328, 3), np.uint8)
    crop[ROI, ROI] = np.linspace(40, 200, 320, dtype=np.uint8)[:, None, None]
    prediction = crop[ROI, ROI].copy()
    for number in range(3):
        matcher.remember(number, crop)
    first = matcher.correction(0, np.clip(prediction.astype(int) + 20, 0, 255).astype(np.uint8))
    assert first is not None and all(abs(o + 20) < 1.5 for o in first.offset)
    lighter = np.clip(prediction.astype(int) + 10, 0, 255).astype(np.uint8)
    second = matcher.correction(1, lighter)  # a smaller cast: halfway from the first fit, not at once
    assert second is not None and all(-16 < o < -14 for o in second.offset)
    assert matcher.correction(2, prediction) is None  # on a clean frame the smoothed -7.5 would be worse: reset
    assert not matcher.references


def test_correction_table_is_exact_identity_and_clips():
    assert (Correction().table()[0, :, 0] == np.arange(256)).all()
    table = Correction((1.0, 1.0, 1.0), (10.0, -10.0, 0.0)).table()[0]
    assert table[250, 0] == 255 and table[5, 1] == 0 and table[100, 2] == 100


@pytest.fixture(scope="module")
def speech(tmp_path_factory) -> Path:
    """0.6 s of the example speech (15 frames), loud enough to open the mouth."""
    samples, rate = sf.read(EXAMPLES_DIR / "hello.wav", dtype="int16")
    path = tmp_path_factory.mktemp("audio") / "speech.wav"
    sf.write(path, samples[int(0.4 * rate) : int(1.0 * rate)], rate)
    return path


def render_pngs(package: Path, audio: Path, out: Path, **options) -> list[np.ndarray]:
    out.mkdir()
    render = RenderOptions(frames_dir=out, frames_format="png", **options)
    with Renderer(package, SessionOptions(precision="fp32", batch_size=4, workers=1)) as renderer:
        renderer.render(audio, out / "render.mp4", render)
    return [cv2.imread(str(path)) for path in sorted(out.glob("*.png"))]


def face_region() -> np.ndarray:
    """The model region outside the mouth, and more than the feather ramp in from its edges (320x320 bool)."""
    region = np.zeros((320, 320), bool)
    region[20:300, 20:300] = True
    region[115:201, 90:231] = False  # the mouth the constructed UNet opens, with a margin
    return region


def outside_mouth_differences(package, frames) -> tuple[np.ndarray, float]:
    """Rendered minus original crop outside the mouth, over all frames: (mean signed B, G, R), mean absolute."""
    schedule = frame_schedule(len(frames), package.frame_count)
    signed, absolute = [], []
    for number, frame in enumerate(frames):
        index = schedule[number]
        rendered = crop_328(frame, package.rects[index])[ROI, ROI][face_region()].astype(float)
        original = crop_328(np.asarray(package.frames[index]), package.rects[index])[ROI, ROI][face_region()]
        signed.append((rendered - original).mean(axis=0))
        absolute.append(np.abs(rendered - original).mean())
    return np.mean(signed, axis=0), float(np.mean(absolute))


def outside_rects_equal(package, a, b) -> bool:
    schedule = frame_schedule(len(a), package.frame_count)
    for number, (x, y) in enumerate(zip(a, b)):
        x1, y1, x2, y2 = package.rects[schedule[number]]
        x, y = x.copy(), y.copy()
        x[y1:y2, x1:x2] = y[y1:y2, x1:x2] = 0
        if not np.array_equal(x, y):
            return False
    return True


def test_cast_model_is_corrected_within_2_levels(tmp_path, speech):
    from lipsync_render.synth.avatar import synth_package

    path = synth_package(tmp_path / "cast", frames=12, weights="cast")
    package = load_package(path)
    plain = render_pngs(path, speech, tmp_path / "off", blend="feather")
    matched = render_pngs(path, speech, tmp_path / "auto", blend="feather", colour_match="auto")
    assert len(plain) == len(matched) == 15
    cast, cast_error = outside_mouth_differences(package, plain)
    fixed, fixed_error = outside_mouth_differences(package, matched)
    # measured on hello.wav (142 frames): cast -19.0, -3.0, +10.2 levels (mean absolute 10.7); corrected 0.0, 0.0,
    # +0.4 (0.4)
    assert cast[0] < -15 and cast[2] > 8 and cast_error > 8
    assert np.abs(fixed).max() < 2 and fixed_error < 2
    assert outside_rects_equal(package, plain, matched)


def test_cast_free_model_changes_by_at_most_one_level(tmp_path, speech):
    from lipsync_render.synth.avatar import synth_package

    path = synth_package(tmp_path / "clean", frames=12, weights="constructed")
    plain = render_pngs(path, speech, tmp_path / "off")
    matched = render_pngs(path, speech, tmp_path / "auto", colour_match="auto")
    assert max(np.abs(a.astype(int) - b).max() for a, b in zip(plain, matched)) <= 1
