"""Synthetic model packages: a procedural avatar with slight head motion, and true-architecture models.

Trained weights are not available to us, so tests, benchmarks and the demo use these packages. The
models have the real SyncTalk_2D shapes and cost (see ``architectures``); only the weights are made up.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

from lipsync_render import __version__
from lipsync_render.package import write_package
from lipsync_render.store_choice import StoreChoice

SKIN_BGR = (150, 175, 215)
FACE_SEMI_AXES = (0.075, 0.175)  # head ellipse half-width, half-height as fractions of frame width, height


def avatar_rects(count: int, width: int, height: int) -> np.ndarray:
    """One square crop rectangle per frame, following the head; integer [x1, y1, x2, y2]."""
    rects = np.empty((count, 4), dtype=np.int32)
    for i, (cx, cy, side) in enumerate(_head_track(count, width, height)):
        x1 = int(round(cx - side / 2))
        y1 = int(round(cy - 0.06 * side))
        rects[i] = (x1, y1, x1 + side, y1 + side)
    return rects


def avatar_frames(count: int, width: int, height: int, seed: int = 0) -> Iterator[np.ndarray]:
    """Deterministic BGR frames of a face-like avatar (head, eyes, nose, closed mouth) moving slightly."""
    rng = np.random.default_rng(seed)
    background = _background(width, height, rng)
    skin = np.clip(np.array(SKIN_BGR, np.float32) + rng.normal(0, 6, (height, width, 1)), 0, 255).astype(np.uint8)
    for cx, cy, side in _head_track(count, width, height):
        frame = background.copy()
        _draw_body(frame, cx, cy, width, height)
        _draw_head(frame, skin, cx, cy, width, height, side)
        yield frame


def _head_track(count: int, width: int, height: int) -> Iterator[tuple[float, float, int]]:
    """Head centre (x at the nose, y at the nose) and crop side per frame: a slow sway, nod and scale wobble."""
    base_side = int(round(2 * FACE_SEMI_AXES[0] * width * 0.94))
    for i in range(count):
        cx = width / 2 + 0.010 * width * math.sin(2 * math.pi * i / 53)
        cy = 0.42 * height + 0.008 * height * math.sin(2 * math.pi * i / 37)
        side = base_side + int(round(2 * math.sin(2 * math.pi * i / 61)))
        yield cx, cy, side


def _background(width: int, height: int, rng: np.random.Generator) -> np.ndarray:
    ys = np.linspace(0, 1, height, dtype=np.float32)[:, None]
    xs = np.linspace(0, 1, width, dtype=np.float32)[None, :]
    base = np.stack([90 + 60 * ys + 0 * xs, 80 + 40 * xs + 0 * ys, 60 + 30 * (1 - ys) + 0 * xs], axis=-1)
    noise = rng.normal(0, 3, (height, width, 1)).astype(np.float32)
    return np.clip(base + noise, 0, 255).astype(np.uint8)


def _draw_body(frame: np.ndarray, cx: float, cy: float, width: int, height: int) -> None:
    shoulders = (int(cx), int(cy + 0.55 * height))
    cv2.ellipse(frame, shoulders, (int(0.22 * width), int(0.3 * height)), 0, 180, 360, (70, 50, 40), -1, cv2.LINE_AA)
    neck = (int(cx - 0.03 * width), int(cy + 0.1 * height), int(0.06 * width), int(0.2 * height))
    cv2.rectangle(frame, neck, (130, 155, 195), -1)


def _draw_head(frame: np.ndarray, skin: np.ndarray, cx: float, cy: float, width: int, height: int, side: int) -> None:
    ax, ay = int(FACE_SEMI_AXES[0] * width), int(FACE_SEMI_AXES[1] * height)
    centre = (int(round(cx)), int(round(cy - 0.03 * height)))
    mask = np.zeros(frame.shape[:2], np.uint8)
    cv2.ellipse(mask, centre, (ax, ay), 0, 0, 360, 255, -1, cv2.LINE_AA)
    alpha = (mask.astype(np.float32) / 255)[..., None]
    y0, y1 = max(0, centre[1] - ay - 2), min(frame.shape[0], centre[1] + ay + 2)
    region = slice(y0, y1)
    frame[region] = (alpha[region] * skin[region] + (1 - alpha[region]) * frame[region]).astype(np.uint8)
    unit = side / 100.0
    eye_y = int(centre[1] - 18 * unit)
    for dx in (-22, 22):
        eye = (int(cx + dx * unit), eye_y)
        cv2.ellipse(frame, eye, (int(8 * unit), int(4 * unit)), 0, 0, 360, (245, 245, 245), -1, cv2.LINE_AA)
        cv2.circle(frame, eye, int(3 * unit), (60, 40, 30), -1, cv2.LINE_AA)
        cv2.line(
            frame,
            (eye[0] - int(10 * unit), eye_y - int(9 * unit)),
            (eye[0] + int(10 * unit), eye_y - int(10 * unit)),
            (50, 60, 80),
            max(1, int(2 * unit)),
            cv2.LINE_AA,
        )
    nose = [
        (int(cx), int(cy - 10 * unit)),
        (int(cx - 6 * unit), int(cy + 4 * unit)),
        (int(cx + 6 * unit), int(cy + 4 * unit)),
    ]
    cv2.polylines(frame, [np.array(nose)], False, (110, 130, 170), max(1, int(1.5 * unit)), cv2.LINE_AA)
    mouth = (int(cx), int(cy + 0.42 * side))
    cv2.ellipse(frame, mouth, (int(16 * unit), int(3 * unit)), 0, 0, 360, (80, 80, 160), -1, cv2.LINE_AA)
    cv2.line(
        frame,
        (mouth[0] - int(15 * unit), mouth[1]),
        (mouth[0] + int(15 * unit), mouth[1]),
        (50, 40, 90),
        max(1, int(1.2 * unit)),
        cv2.LINE_AA,
    )


def build_models(seed: int = 0, tiny: bool = False, weights: str = "constructed") -> tuple[bytes, bytes]:
    """Serialized (unet, encoder) ONNX models: true architectures (or tiny stand-ins) with made-up weights
    (``weights``: constructed, cast = constructed with a known colour cast, or random)."""
    from lipsync_render.synth import architectures

    if weights == "random" or tiny:
        source = architectures.RandomWeights(seed)
    else:
        from lipsync_render.synth.weights import CAST_LOGITS, ConstructedWeights

        source = ConstructedWeights(seed, cast=CAST_LOGITS if weights == "cast" else (0.0, 0.0, 0.0))
    unet = architectures.build_unet(source, tiny=tiny)
    encoder = architectures.build_encoder(source, tiny=tiny)
    return unet.SerializeToString(), encoder.SerializeToString()


def synth_package(
    dest: str | Path,
    name: str | None = None,
    frames: int = 100,
    size: tuple[int, int] = (1280, 720),
    seed: int = 0,
    tiny: bool = False,
    weights: str = "constructed",
    frames_store: StoreChoice = StoreChoice(),
) -> Path:
    """Write a complete synthetic package to ``dest`` and return its path (frames kept in ``frames_store``)."""
    dest = Path(dest)
    width, height = size
    unet, encoder = build_models(seed, tiny, weights)
    return write_package(
        dest,
        name or dest.name,
        avatar_frames(frames, width, height, seed),
        frames,
        avatar_rects(frames, width, height),
        unet,
        encoder,
        created_by=f"lipsync-render {__version__} synth",
        extra={"synthetic": {"seed": seed, "tiny": tiny, "weights": "tiny" if tiny else weights}},
        frames_store=frames_store,
    )
