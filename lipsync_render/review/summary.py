"""One output's review: what its sidecar says (status, speed, backend, precision, package), its poster frame and
whether its mouth follows its audio (``signals``). Nothing here raises for a bad output: an output that cannot be
read or measured gets a card saying so, and is flagged for a look."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from lipsync_render.errors import LipsyncError
from lipsync_render.media.video import probe, read_frames_bgr
from lipsync_render.package import load_package
from lipsync_render.review.signals import Sync, best_lag, loudness, mouth_motion

POSTER_WIDTH = 360


@dataclass
class OutputReview:
    """What a review card shows for one output."""

    path: Path
    status: str = "ok"
    problem: str | None = None  # why it could not be read or measured
    duration: float | None = None
    frames: int = 0
    render_fps: float | None = None  # from the sidecar: frames rendered per second
    backend: str | None = None
    precision: str | None = None
    model: str | None = None
    has_sidecar: bool = False
    motion: np.ndarray | None = field(default=None, repr=False)
    level: np.ndarray | None = field(default=None, repr=False)
    sync: Sync = field(default_factory=lambda: Sync(None, None))
    poster: bytes | None = field(default=None, repr=False)  # JPEG

    @property
    def flagged(self) -> bool:
        """Needs a look: unreadable, not measurable, or a mouth that does not follow the audio."""
        return self.problem is not None or self.status != "ok" or self.sync.flagged

    @property
    def speed(self) -> str | None:
        if not self.render_fps:
            return None
        return f"{self.render_fps:.1f} fps ({self.render_fps / 25:.2f}x real time)"


def read_sidecar(path: Path) -> dict:
    """``X.mp4.json`` beside the output, or {} when there is none or it is not a readable JSON object."""
    from lipsync_render.jobs.sidecar import read_sidecar as read_beside

    return read_beside(str(path)) or {}


def review_output(path: Path, model: str | os.PathLike | None = None) -> OutputReview:
    """Review one output; ``model`` (a package name or path) is used when the sidecar names none."""
    path = Path(path)
    sidecar = read_sidecar(path)
    plan = sidecar.get("plan") if isinstance(sidecar.get("plan"), dict) else {}
    review = OutputReview(
        path=path,
        status=str(sidecar.get("status", "ok")),
        render_fps=_number(sidecar.get("fps")),
        backend=_text(plan.get("backend")),
        precision=_text(plan.get("precision")),
        model=_text(sidecar.get("model")) or (str(model) if model is not None else None),
        has_sidecar=bool(sidecar),
    )
    try:
        info = probe(path)
    except Exception as exc:  # PyAV raises its own types for a file it cannot open
        review.problem = f"cannot be read as a video ({str(exc).splitlines()[0][:120] if str(exc) else 'no detail'})"
        return review
    review.frames, review.duration = info.frames, round(info.frames / info.fps, 2) if info.fps else None
    if info.audio_codec is None:
        review.problem = "has no audio track"
    package = None
    if review.model is None:
        review.problem = review.problem or "names no package (no sidecar; give --model)"
    else:
        try:
            package = load_package(review.model, verify_checksums=False)
        except LipsyncError as exc:
            review.problem = review.problem or f"its package cannot be loaded ({exc})"
    _measure(review, info.frames, package, sidecar.get("options"))
    return review


def _measure(review: OutputReview, count: int, package, options) -> None:
    """Mouth motion, loudness, their best lag and the poster (the frame of widest mouth, else the middle one)."""
    options = options if isinstance(options, dict) else {}
    best = {"motion": -1.0, "frame": None}

    def keep(frame: np.ndarray, motion: float) -> None:
        if motion > best["motion"]:
            best["motion"], best["frame"] = motion, frame.copy()

    try:
        frames = read_frames_bgr(review.path)
        if package is not None:
            start = options.get("start_frame", 0)
            loop = options.get("loop", "pingpong")
            start = start if type(start) is int and start >= 0 else 0
            loop = loop if loop in ("pingpong", "forward") else "pingpong"
            review.motion = mouth_motion(frames, count, package, start, loop, on_frame=keep)
        else:
            for number, frame in enumerate(frames):
                if number == count // 2:
                    best["frame"] = frame
                    break
        if review.problem is None:
            review.level = loudness(review.path, count)
            review.sync = best_lag(review.motion, review.level)
    except (LipsyncError, Exception) as exc:  # a broken stream mid-file is a finding, not a crash
        review.problem = review.problem or f"cannot be measured ({str(exc).splitlines()[0][:120] if str(exc) else exc})"
    if best["frame"] is not None:
        review.poster = poster_jpeg(best["frame"])


def poster_jpeg(frame: np.ndarray) -> bytes:
    height, width = frame.shape[:2]
    small = cv2.resize(
        frame, (POSTER_WIDTH, max(2, round(height * POSTER_WIDTH / width))), interpolation=cv2.INTER_AREA
    )
    ok, data = cv2.imencode(".jpg", small, [cv2.IMWRITE_JPEG_QUALITY, 80])
    return data.tobytes() if ok else b""


def _number(value) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _text(value) -> str | None:
    return value if isinstance(value, str) and value else None
