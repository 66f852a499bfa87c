"""Reading SyncTalk_2D training data (reference spec §5.1, §5.2, §8): its frames, crop rectangles and features.

Two dataset layouts are understood:

- ``synctalk2d``: the SyncTalk_2D training layout, ``full_body_img/<i>.jpg`` + ``landmarks/<i>.lms``
  (+ optional ``aud_ave.npy``); ``video=`` replaces the JPEG frames with a video's frames.
- ``sanders``: the pre-processed layout, ``full_body_video.mp4`` + ``crop_rects.json`` or
  ``cache/crop_rectangles.json`` (+ ``aud_ave.npy``, ``checkpoint/model_best.onnx``).

Every input is checked when the dataset is opened; the frames are streamed later, one at a time.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np

from lipsync_render import json_bounded
from lipsync_render.contract import NO_FACE, check_features, parse_rects
from lipsync_render.errors import PackageError
from lipsync_render.package.dataset_video import video_frames, video_size
from lipsync_render.package.landmarks import landmark_rect

SYNCTALK2D = "synctalk2d"
SANDERS = "sanders"

FRAMES_DIR = "full_body_img"
LANDMARKS_DIR = "landmarks"
FEATURES_FILE = "aud_ave.npy"
SANDERS_VIDEO = "full_body_video.mp4"
SANDERS_RECTS = ("crop_rects.json", "cache/crop_rectangles.json")


@dataclass
class DatasetSource:
    """Everything a package is built from, checked and ready to stream."""

    layout: str
    width: int
    height: int
    frames: Callable[[], Iterator[np.ndarray]]  # a fresh frame stream per call
    frames_origin: Path
    rects: np.ndarray  # (N, 4) int32
    rects_origin: Path
    rect_sources: list[Path]  # the file each rectangle came from, for error messages
    features: np.ndarray | None
    features_path: Path | None

    @property
    def frame_count(self) -> int:
        return len(self.rects)


def numbered_files(folder: Path, suffix: str) -> list[Path]:
    """``folder/0<suffix> .. folder/<N-1><suffix>`` in numeric order; a gap or a non-numeric name is an error."""
    files = {}
    for path in folder.iterdir():
        if path.suffix.lower() != suffix or not path.is_file():
            continue
        if not path.stem.isdigit():
            raise PackageError(f"{path} is not named <index>{suffix}: files in {folder} must be numbered 0, 1, 2, ...")
        files[int(path.stem)] = path
    for expected in range(len(files)):
        if expected not in files:
            raise PackageError(
                f"{folder / f'{expected}{suffix}'} is missing: {folder} must hold frames 0..{len(files) - 1} "
                f"without gaps (it has {len(files)} {suffix} files)."
            )
    return [files[i] for i in range(len(files))]


def landmark_rects(
    landmarks_dir: Path, frame_files: list[Path] | None, frame_count: int, frames_origin: Path
) -> np.ndarray:
    """One rectangle per frame from ``landmarks/<i>.lms``; a frame whose file is missing or whose landmarks are
    degenerate (not finite, an empty rectangle) gets a null one (``NO_FACE``: no face); no file may be extra."""
    if not landmarks_dir.is_dir():
        raise PackageError(f"Landmark directory {landmarks_dir} does not exist: every frame needs landmarks/<i>.lms.")
    files = landmark_files(landmarks_dir)
    extra = [i for i in files if i >= frame_count]
    if extra:
        raise PackageError(
            f"{files[min(extra)]} has no frame: {landmarks_dir} has landmark files up to {max(files)}.lms but "
            f"{frames_origin} has {frame_count} frames."
        )
    rects = [landmark_rect(files[i]) if i in files else None for i in range(frame_count)]
    return np.array([NO_FACE if rect is None else rect for rect in rects], dtype=np.int32).reshape(-1, 4)


def landmark_files(folder: Path) -> dict[int, Path]:
    """``folder/<i>.lms`` by index (gaps allowed: a frame without its file has no face); other names are errors."""
    files = {}
    for path in folder.iterdir():
        if path.suffix.lower() != ".lms" or not path.is_file():
            continue
        if not path.stem.isdigit():
            raise PackageError(f"{path} is not named <index>.lms: files in {folder} must be numbered 0, 1, 2, ...")
        files[int(path.stem)] = path
    return files


def read_rects_json(path: Path) -> np.ndarray:
    """Rectangles of the pre-processed layout: a list of [x1, y1, x2, y2], or a dict "<i>": {"rect": [...]}."""
    try:
        data = json_bounded.read(path, 64 << 20)
    except json_bounded.JsonProblem as exc:
        raise PackageError(f"Cannot read crop rectangles: {exc}") from None
    if isinstance(data, dict):
        if not all(str(key).isdigit() for key in data) or sorted(map(int, data)) != list(range(len(data))):
            raise PackageError(f"{path} must map frame indices '0'..'{len(data) - 1}' to rectangles.")
        try:
            data = [data[str(i)]["rect"] for i in range(len(data))]
        except (KeyError, TypeError):
            raise PackageError(f'{path} must hold a {{"rect": [x1, y1, x2, y2]}} entry for every frame.') from None
    return parse_rects(data, path, allow_null=True).astype(np.int32)


def dataset_features(dataset: Path) -> tuple[np.ndarray | None, Path | None]:
    """The dataset's ``aud_ave.npy`` and its path, or (None, None) when it has none."""
    path = dataset / FEATURES_FILE
    return (read_features(path), path) if path.is_file() else (None, None)


def read_features(path: Path) -> np.ndarray:
    """Pre-extracted AVE features (K, 512), memory-mapped."""
    try:
        features = np.load(path, mmap_mode="r")
    except (OSError, ValueError) as exc:
        raise PackageError(f"{path} is not a readable .npy array ({exc}).") from None
    problems = check_features(features, path)
    if problems:
        raise PackageError(problems[0])
    return features


def jpeg_frames(files: list[Path], width: int, height: int) -> Iterator[np.ndarray]:
    """BGR frames from image files, one at a time, all of one size."""
    import cv2

    for path in files:
        frame = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if frame is None:
            raise PackageError(f"Cannot decode frame image {path}.")
        if frame.shape != (height, width, 3):
            raise PackageError(
                f"Frame {path} is {frame.shape[1]}x{frame.shape[0]}; the first frame is {width}x{height}."
            )
        yield frame


def synctalk2d_source(dataset: Path, video: Path | None) -> DatasetSource:
    """``full_body_img/<i>.jpg`` (or a video) + ``landmarks/<i>.lms`` (+ ``aud_ave.npy``)."""
    landmarks_dir = dataset / LANDMARKS_DIR
    if video is not None:
        width, height = video_size(video)
        lms_count = max(landmark_files(landmarks_dir), default=-1) + 1 if landmarks_dir.is_dir() else 0
        if lms_count == 0:
            raise PackageError(f"Landmark directory {landmarks_dir} has no <i>.lms files for the frames of {video}.")
        rects = landmark_rects(landmarks_dir, None, lms_count, video)
        frames = partial(
            video_frames, video, lms_count, width, height, f"{landmarks_dir} has {lms_count} landmark files"
        )
        frames_origin = video
    else:
        frames_dir = dataset / FRAMES_DIR
        frame_files = numbered_files(frames_dir, ".jpg")
        if not frame_files:
            raise PackageError(f"{frames_dir} holds no <i>.jpg frames.")
        width, height = jpeg_size(frame_files[0])
        rects = landmark_rects(landmarks_dir, frame_files, len(frame_files), frames_dir)
        frames = partial(jpeg_frames, frame_files, width, height)
        frames_origin = frames_dir
    features, features_path = dataset_features(dataset)
    return DatasetSource(
        layout=SYNCTALK2D,
        width=width,
        height=height,
        frames=frames,
        frames_origin=frames_origin,
        rects=rects,
        rects_origin=landmarks_dir,
        rect_sources=[landmarks_dir / f"{i}.lms" for i in range(len(rects))],
        features=features,
        features_path=features_path,
    )


def jpeg_size(path: Path) -> tuple[int, int]:
    """(width, height) of one image file."""
    import cv2

    frame = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if frame is None:
        raise PackageError(f"Cannot decode frame image {path}.")
    return frame.shape[1], frame.shape[0]


def sanders_source(dataset: Path, video: Path | None) -> DatasetSource:
    """``full_body_video.mp4`` + ``crop_rects.json`` / ``cache/crop_rectangles.json`` (+ ``aud_ave.npy``)."""
    video = video or dataset / SANDERS_VIDEO
    width, height = video_size(video)
    rects_path = next((dataset / rel for rel in SANDERS_RECTS if (dataset / rel).is_file()), None)
    if rects_path is not None:
        rects = read_rects_json(rects_path)
        rect_sources = [rects_path] * len(rects)
    elif (dataset / LANDMARKS_DIR).is_dir():
        rects_path = dataset / LANDMARKS_DIR
        rects = landmark_rects(rects_path, None, max(landmark_files(rects_path), default=-1) + 1, video)
        rect_sources = [rects_path / f"{i}.lms" for i in range(len(rects))]
    else:
        raise PackageError(f"{dataset} has no crop rectangles: expected {' or '.join(SANDERS_RECTS)} (or landmarks/).")
    features, features_path = dataset_features(dataset)
    return DatasetSource(
        layout=SANDERS,
        width=width,
        height=height,
        frames=partial(video_frames, video, len(rects), width, height, f"{rects_path} has {len(rects)} rectangles"),
        frames_origin=video,
        rects=rects,
        rects_origin=rects_path,
        rect_sources=rect_sources,
        features=features,
        features_path=features_path,
    )


def open_dataset(dataset: str | os.PathLike, video: str | os.PathLike | None = None) -> DatasetSource:
    """Detect the layout of a dataset directory and check its frames, rectangles and features."""
    dataset = Path(dataset).expanduser()
    video = Path(video).expanduser() if video is not None else None
    if not dataset.is_dir():
        raise PackageError(f"Dataset directory {dataset} does not exist.")
    has_images = (dataset / FRAMES_DIR).is_dir()
    is_preprocessed = (dataset / SANDERS_VIDEO).is_file() or any((dataset / rel).is_file() for rel in SANDERS_RECTS)
    if has_images or (video is not None and not is_preprocessed):
        return synctalk2d_source(dataset, video)
    if is_preprocessed:
        return sanders_source(dataset, video)
    raise PackageError(
        f"Dataset directory {dataset} has no frames: expected {FRAMES_DIR}/<i>.jpg (SyncTalk_2D) "
        f"or {SANDERS_VIDEO} (pre-processed), or pass --video."
    )
