"""Inputs for calibrating reduced-precision UNets (int8 quantisation, the quality yardstick in
``planning.quality``), from the package's own frames; any backend."""

from __future__ import annotations

import numpy as np

from lipsync_render.contract import AUDIO_ENCODER
from lipsync_render.media.features import audio_features, frame_blocks
from lipsync_render.model_input import crop_328, visual_input
from lipsync_render.package import Package

CALIBRATION_FRAMES = 24


def calibration_inputs(
    package: Package, count: int = CALIBRATION_FRAMES, seed: int = 0
) -> list[tuple[np.ndarray, np.ndarray]]:
    """(visual, audio) UNet inputs of one frame each: evenly spaced package frames with speech-like audio blocks."""
    table = _calibration_features(package, seed)
    indices = np.linspace(0, package.frame_count - 1, count).round().astype(int)
    rows = np.linspace(8, len(table) - 9, count).round().astype(int)
    return [
        (visual_input(crop_328(package.frames[index], package.rects[index]))[None], frame_blocks(table, [row]))
        for index, row in zip(indices, rows)
    ]


def _calibration_features(package: Package, seed: int) -> np.ndarray:
    """The package's pre-extracted features, else the audio encoder's output on a babble-like test signal."""
    if package.features is not None and len(package.features) >= 32:
        return np.asarray(package.features, np.float32)
    from lipsync_render.options import SessionOptions
    from lipsync_render.runtimes import get_backend

    encoder = get_backend("onnxruntime").load(package, AUDIO_ENCODER, SessionOptions(device="cpu", threads=1))
    return audio_features(babble(6.0, seed), encoder)


def babble(seconds: float, seed: int = 0, rate: int = 16000) -> np.ndarray:
    """A speech-like signal: voiced harmonics with a wandering pitch, in 4 Hz syllables, with pauses."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    pitch = 120 + 40 * np.sin(2 * np.pi * 0.7 * t) + 10 * rng.standard_normal()
    phase = 2 * np.pi * np.cumsum(pitch) / rate
    voiced = sum(np.sin(k * phase) / k for k in range(1, 12))
    syllables = np.clip(np.sin(2 * np.pi * 4 * t), 0, None) * (np.sin(2 * np.pi * 0.3 * t) > -0.6)
    noise = 0.05 * rng.standard_normal(len(t))
    return (0.3 * syllables * voiced + noise * syllables).astype(np.float32)
