"""Build model packages from SyncTalk_2D training data (reference spec §5.1, §5.2, §8).

Two dataset layouts are understood:

- ``synctalk2d``: the SyncTalk_2D training layout, ``full_body_img/<i>.jpg`` + ``landmarks/<i>.lms``
  (+ optional ``aud_ave.npy``); ``video=`` replaces the JPEG frames with a video's frames.
- ``sanders``: the pre-processed layout, ``full_body_video.mp4`` + ``crop_rects.json`` or
  ``cache/crop_rectangles.json`` (+ ``aud_ave.npy``, ``checkpoint/model_best.onnx``).

Frames are streamed into the package one at a time; every input is checked before anything is written.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np

from lipsync_render.contract import (
    AUDIO_ENCODER,
    UNET,
    ModelContract,
    check_features,
    check_model,
    check_rects,
    parse_rects,
)
from lipsync_render.errors import PackageError
from lipsync_render.package.loader import MANIFEST, validate_package
from lipsync_render.package.writer import write_package
from lipsync_render.store_choice import StoreChoice, store_choice

LANDMARK_COUNT = 110
SYNCTALK2D = "synctalk2d"
SANDERS = "sanders"

FRAMES_DIR = "full_body_img"
LANDMARKS_DIR = "landmarks"
FEATURES_FILE = "aud_ave.npy"
SANDERS_VIDEO = "full_body_video.mp4"
SANDERS_RECTS = ("crop_rects.json", "cache/crop_rectangles.json")
DEFAULT_UNETS = ("checkpoint/model_best.onnx",)
DEFAULT_ENCODERS = ("audio_encoder.onnx", "models/audio_encoder.onnx", "checkpoint/audio_encoder.onnx")


# --- landmarks and rectangles ------------------------------------------------------------------


def read_landmarks(path: str | os.PathLike) -> np.ndarray:
    """The 110 landmarks of one ``.lms`` file as (110, 2) int32: parsed as float32, then truncated (§5.2)."""
    path = Path(path)
    try:
        lines = path.read_text().strip().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise PackageError(f"Cannot read landmark file {path} ({exc}).") from None
    if len(lines) != LANDMARK_COUNT:
        raise PackageError(f"Landmark file {path} has {len(lines)} lines; expected {LANDMARK_COUNT} lines of 'x y'.")
    points = []
    for number, line in enumerate(lines, start=1):
        fields = line.split()
        try:
            point = [float(field) for field in fields]
        except ValueError:
            point = []
        if len(point) != 2 or not all(np.isfinite(point)):
            raise PackageError(f"Landmark file {path} line {number} is {line.strip()!r}, not two numbers 'x y'.")
        points.append(point)
    return np.asarray(points, dtype=np.float32).astype(np.int32)


def crop_rect(landmarks: np.ndarray) -> tuple[int, int, int, int]:
    """The square mouth-and-jaw rectangle (x1, y1, x2, y2), half-open, exactly as the reference derives it."""
    xmin = int(landmarks[1][0])
    ymin = int(landmarks[52][1])
    xmax = int(landmarks[31][0])
    width = xmax - xmin
    return xmin, ymin, xmax, ymin + width


def smooth_rects(rects: np.ndarray, n: int, frame_size: tuple[int, int] | None = None) -> np.ndarray:
    """Centred moving average of each rectangle's centre and size over ``n`` frames, against jitter.

    The result stays square and integer; with ``frame_size`` (width, height) it is kept inside the frame.
    The window shrinks at the ends of the sequence instead of padding. ``n`` <= 1 returns the rects unchanged.
    """
    rects = np.asarray(rects, dtype=np.int64).reshape(-1, 4)
    if n <= 1 or len(rects) < 2:
        return rects.astype(np.int32)
    centre_x = (rects[:, 0] + rects[:, 2]) / 2.0
    centre_y = (rects[:, 1] + rects[:, 3]) / 2.0
    size = (rects[:, 2] - rects[:, 0]).astype(np.float64)
    before, after = (n - 1) // 2, n // 2
    centre_x, centre_y, size = (_centred_mean(v, before, after) for v in (centre_x, centre_y, size))

    size = np.maximum(np.rint(size), 1)
    if frame_size is not None:
        size = np.minimum(size, min(frame_size))
    x1 = np.rint(centre_x - size / 2)
    y1 = np.rint(centre_y - size / 2)
    if frame_size is not None:
        width, height = frame_size
        x1 = np.clip(x1, 0, width - size)
        y1 = np.clip(y1, 0, height - size)
    return np.stack([x1, y1, x1 + size, y1 + size], axis=1).astype(np.int32)


def _centred_mean(values: np.ndarray, before: int, after: int) -> np.ndarray:
    """Mean of values[i - before : i + after + 1] for every i, the window clipped to the sequence."""
    sums = np.concatenate([[0.0], np.cumsum(values)])
    index = np.arange(len(values))
    start = np.maximum(index - before, 0)
    stop = np.minimum(index + after + 1, len(values))
    return (sums[stop] - sums[start]) / (stop - start)


# --- dataset sources -----------------------------------------------------------------------------


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
    """One rectangle per frame from ``landmarks/<i>.lms``; every frame must have its file and no file may be extra."""
    if not landmarks_dir.is_dir():
        raise PackageError(f"Landmark directory {landmarks_dir} does not exist: every frame needs landmarks/<i>.lms.")
    if frame_files is not None:
        for i, frame in enumerate(frame_files):
            if not (landmarks_dir / f"{i}.lms").is_file():
                raise PackageError(f"Frame {frame} has no landmarks: {landmarks_dir / f'{i}.lms'} is missing.")
    lms_files = numbered_files(landmarks_dir, ".lms")
    if len(lms_files) != frame_count:
        raise PackageError(
            f"{landmarks_dir} has {len(lms_files)} landmark files but {frames_origin} has {frame_count} frames."
        )
    return np.array([crop_rect(read_landmarks(path)) for path in lms_files], dtype=np.int32).reshape(-1, 4)


def read_rects_json(path: Path) -> np.ndarray:
    """Rectangles of the pre-processed layout: a list of [x1, y1, x2, y2], or a dict "<i>": {"rect": [...]}."""
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PackageError(f"Cannot read crop rectangles from {path} ({exc}).") from None
    if isinstance(data, dict):
        if not all(str(key).isdigit() for key in data) or sorted(map(int, data)) != list(range(len(data))):
            raise PackageError(f"{path} must map frame indices '0'..'{len(data) - 1}' to rectangles.")
        try:
            data = [data[str(i)]["rect"] for i in range(len(data))]
        except (KeyError, TypeError):
            raise PackageError(f'{path} must hold a {{"rect": [x1, y1, x2, y2]}} entry for every frame.') from None
    return parse_rects(data, path).astype(np.int32)


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


def open_video(path: Path):
    """An open PyAV container with a video stream; errors name the file."""
    import av

    if not path.is_file():
        raise PackageError(f"Video {path} does not exist.")
    try:
        container = av.open(str(path))
    except av.FFmpegError as exc:
        raise PackageError(f"Cannot open video {path} ({exc}).") from None
    if not container.streams.video:
        container.close()
        raise PackageError(f"{path} has no video stream.")
    return container


def video_size(path: Path) -> tuple[int, int]:
    """(width, height) of a video's first stream."""
    with open_video(path) as container:
        stream = container.streams.video[0]
        return int(stream.codec_context.width), int(stream.codec_context.height)


def video_frames(path: Path, frame_count: int, width: int, height: int, count_origin: str) -> Iterator[np.ndarray]:
    """BGR frames decoded with PyAV, one at a time; the video must hold exactly ``frame_count`` frames
    (``count_origin`` says where that number comes from, e.g. "landmarks/ has 12 landmark files")."""
    import av

    with open_video(path) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        decoded = 0
        try:
            for frame in container.decode(stream):
                decoded += 1
                if decoded > frame_count:
                    continue  # only count the rest, for the error message
                image = frame.to_ndarray(format="bgr24")
                if image.shape != (height, width, 3):
                    raise PackageError(
                        f"Frame {decoded - 1} of {path} is {image.shape[1]}x{image.shape[0]}; "
                        f"the first frame is {width}x{height}."
                    )
                yield image
        except av.FFmpegError as exc:
            raise PackageError(f"Cannot decode video {path} at frame {decoded} ({exc}).") from None
    if decoded != frame_count:
        raise PackageError(f"{path} has {decoded} frames but {count_origin}.")


def synctalk2d_source(dataset: Path, video: Path | None) -> DatasetSource:
    """``full_body_img/<i>.jpg`` (or a video) + ``landmarks/<i>.lms`` (+ ``aud_ave.npy``)."""
    landmarks_dir = dataset / LANDMARKS_DIR
    if video is not None:
        width, height = video_size(video)
        lms_count = len(numbered_files(landmarks_dir, ".lms")) if landmarks_dir.is_dir() else 0
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
        rects = landmark_rects(rects_path, None, len(numbered_files(rects_path, ".lms")), video)
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


# --- models --------------------------------------------------------------------------------------


def require_model(path: str | os.PathLike, contract: ModelContract) -> None:
    """Raise PackageError unless the ONNX file exists and fits the contract."""
    path = Path(path)
    if not path.is_file():
        raise PackageError(f"The {contract.label} model {path} does not exist.")
    problems, _ = check_model(path, contract)
    if problems:
        raise PackageError(problems[0])


def find_model(
    given: str | os.PathLike | None, dataset: Path, defaults: tuple[str, ...], role: str, option: str
) -> Path:
    """The model passed on the command line, else the first default found in the dataset."""
    if given is not None:
        return Path(given).expanduser()
    for rel in defaults:
        if (dataset / rel).is_file():
            return dataset / rel
    looked = ", ".join(str(dataset / rel) for rel in defaults)
    raise PackageError(f"No {role} model given and none found in the dataset (looked for {looked}): pass {option}.")


# --- building ------------------------------------------------------------------------------------


def build_package(
    dest: str | os.PathLike,
    name: str,
    dataset_dir: str | os.PathLike,
    unet: str | os.PathLike | None = None,
    encoder: str | os.PathLike | None = None,
    video: str | os.PathLike | None = None,
    smooth: int = 0,
    frames_store: StoreChoice = StoreChoice(),
) -> Path:
    """Build a package at ``dest`` from a SyncTalk_2D or pre-processed ("sanders") dataset; returns its path.

    ``unet`` defaults to the dataset's ``checkpoint/model_best.onnx``, ``encoder`` to its ``audio_encoder.onnx``
    (also looked for under ``models/`` and ``checkpoint/``). ``smooth`` > 1 averages the rectangles over that
    many frames; ``frames_store`` is how the frames are kept (npy or JPEG). Nothing is left at ``dest`` when
    anything fails.
    """
    dest = Path(dest).expanduser()
    dataset = Path(dataset_dir).expanduser()
    if smooth < 0:
        raise PackageError(f"The smoothing window must be 0 (off) or a number of frames, not {smooth}.")
    if dest.exists() and not (dest / MANIFEST).is_file():
        raise PackageError(f"{dest} already exists and is not a model package; refusing to replace it.")

    source = open_dataset(dataset, video)
    unet_path = find_model(unet, dataset, DEFAULT_UNETS, "UNet", "--unet")
    audio_encoder_path = find_model(encoder, dataset, DEFAULT_ENCODERS, "audio encoder", "--encoder")
    require_model(unet_path, UNET)
    require_model(audio_encoder_path, AUDIO_ENCODER)
    problems = check_rects(source.rects, source.width, source.height, source.rect_sources)
    if problems:
        raise PackageError(problems[0])
    rects = smooth_rects(source.rects, smooth, (source.width, source.height)) if smooth > 1 else source.rects

    extra = {
        "source": {
            "dataset": str(dataset.resolve()),
            "layout": source.layout,
            "frames": str(source.frames_origin.resolve()),
            "rects": str(source.rects_origin.resolve()),
            "features": str(source.features_path.resolve()) if source.features_path else None,
            "unet": str(unet_path.resolve()),
            "encoder": str(audio_encoder_path.resolve()),
            "smoothing": smooth if smooth > 1 else 0,
        }
    }
    write_package(
        dest,
        name,
        source.frames(),
        source.frame_count,
        rects,
        unet_path,
        audio_encoder_path,
        features=source.features,
        extra=extra,
        frames_store=frames_store,
    )
    problems = validate_package(dest)
    if problems:
        shutil.rmtree(dest, ignore_errors=True)
        raise PackageError(f"The package built at {dest} does not validate: {problems[0]}")
    return dest


def describe_build(path: str | os.PathLike) -> str:
    """A short summary of a freshly built package: frames, size, rectangles, models, features."""
    path = Path(path)
    manifest = json.loads((path / MANIFEST).read_text())
    files = manifest["files"]
    rects = np.asarray(json.loads((path / files["rects"]).read_text()), dtype=np.int64)
    sizes = rects[:, 2] - rects[:, 0]
    source = manifest.get("source", {})
    lines = [
        f"built {path} from {source.get('dataset')} ({source.get('layout')} layout)",
        f"  frames:   {manifest['frame_count']} x {manifest['width']}x{manifest['height']} at {manifest['fps']} fps "
        f"({store_choice(manifest)} store, "
        f"{sum((path / files[r]).stat().st_size for r in ('frames', 'frames_index') if r in files) / 2**20:.1f} MiB)",
        f"  rects:    size {sizes.min()}..{sizes.max()} (mean {sizes.mean():.1f}), "
        f"x1 {rects[:, 0].min()}..{rects[:, 0].max()}, "
        f"y1 {rects[:, 1].min()}..{rects[:, 1].max()}"
        + (f", smoothed over {source['smoothing']} frames" if source.get("smoothing") else ""),
    ]
    for role, label in (("unet", "unet"), ("encoder", "encoder")):
        io = manifest["models"][role]
        size = (path / files[role]).stat().st_size / 2**20
        lines.append(
            f"  {label + ':':<9} {files[role]} ({size:.1f} MiB), "
            f"{', '.join(io['inputs'])} -> {', '.join(io['outputs'])}"
        )
    if "features" in files:
        features = np.load(path / files["features"], mmap_mode="r")
        lines.append(f"  features: {files['features']} {features.shape[0]}x{features.shape[1]} (pre-extracted)")
    else:
        lines.append("  features: none (audio is encoded at render time)")
    return "\n".join(lines)
