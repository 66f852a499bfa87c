"""The demo package visibly talks: checked on decoded MP4 frames, as a viewer would see them.

Uses a small package with constructed weights (true architectures, so each render runs the real UNet cost).
"""

from pathlib import Path

import cv2
import numpy as np
import pytest
import soundfile as sf

from lipsync_render.contract import ROI
from lipsync_render.media.video import read_frames_bgr
from lipsync_render.model_input import crop_328
from lipsync_render.options import SessionOptions
from lipsync_render.package import load_package
from lipsync_render.planning.quality import psnr
from lipsync_render.rendering.frame_order import frame_schedule
from lipsync_render.rendering.renderer import Renderer

EXAMPLES_DIR = Path(__file__).resolve().parents[2] / "examples"
MOUTH = (slice(135, 186), slice(110, 211))  # where the constructed UNet opens the mouth, 320x320 ROI coords
MOUTH_AREA = (slice(115, 201), slice(90, 231))  # a margin around it, excluded from the pass-through check
# The first 2.68 s of the example speech: two phrases, each followed by a pause of 9-10 frames, so the mouth both
# opens and closes at half the UNet cost of the whole clip.
SPEECH_SECONDS = 2.68


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    from lipsync_render.synth.avatar import synth_package

    return load_package(synth_package(tmp_path_factory.mktemp("demo") / "demo", frames=20, weights="constructed"))


@pytest.fixture(scope="module")
def renderer(demo):
    with Renderer(demo, SessionOptions(batch_size=8, workers=0)) as renderer:
        yield renderer


def decoded_rois(package, video):
    """(input ROI, decoded output ROI) luminance pairs per frame: the rect crop brought back to the 320 ROI."""
    frames = list(read_frames_bgr(video))
    schedule = frame_schedule(len(frames), package.frame_count)
    pairs = []
    for frame, index in zip(frames, schedule):
        source, rect = np.asarray(package.frames[index]), package.rects[index]
        before = crop_328(source, rect)[ROI, ROI]
        after = crop_328(frame, rect)[ROI, ROI]
        pairs.append(
            (
                cv2.cvtColor(before, cv2.COLOR_BGR2GRAY).astype(np.float64),
                cv2.cvtColor(after, cv2.COLOR_BGR2GRAY).astype(np.float64),
            )
        )
    return pairs


def test_mouth_follows_loudness_and_the_face_passes_through(demo, renderer, tmp_path):
    speech, rate = sf.read(EXAMPLES_DIR / "hello.wav", dtype="int16")
    wav = tmp_path / "hello.wav"
    sf.write(wav, speech[: int(SPEECH_SECONDS * rate)], rate)
    renderer.render(wav, tmp_path / "hello.mp4")
    pairs = decoded_rois(demo, tmp_path / "hello.mp4")
    darkness = np.array([(b[MOUTH] - a[MOUTH]).mean() for b, a in pairs])
    samples, rate = sf.read(wav, dtype="float64")
    hop = rate // 25
    rms = np.array(
        [
            np.sqrt(np.mean(samples[k * hop : (k + 1) * hop] ** 2)) if k * hop < len(samples) else 0.0
            for k in range(len(pairs))
        ]
    )
    r = np.corrcoef(darkness, rms)[0, 1]
    assert r >= 0.7, f"mouth darkness vs 40 ms RMS: r = {r:.3f}"
    assert darkness.max() > 40 and (darkness < 3).sum() > 5, "the mouth both opens and closes"
    outside = np.ones((320, 320), bool)
    outside[MOUTH_AREA] = False
    worst = min(psnr(b[outside], a[outside], 255) for b, a in pairs)
    assert worst >= 30, f"face outside the mouth area: PSNR {worst:.1f} dB"


def test_silence_keeps_the_mouth_closed(demo, renderer, tmp_path):
    sf.write(tmp_path / "silence.wav", np.zeros(16000, np.int16), 16000)
    renderer.render(tmp_path / "silence.wav", tmp_path / "silence.mp4")
    pairs = decoded_rois(demo, tmp_path / "silence.mp4")
    darkness = np.array([(b[MOUTH] - a[MOUTH]).mean() for b, a in pairs])
    assert np.abs(darkness).max() < 2, darkness.round(2).tolist()
    assert min(psnr(b, a, 255) for b, a in pairs) >= 30
