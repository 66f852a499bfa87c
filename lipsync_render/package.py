"""Model packages: the manifest, validation, background frames, crop rectangles and model files.

A package is a directory (format documented in ``packages/README.md``)::

    package.json        manifest: format version, name, fps, frame size and count, file names,
                        model input/output names, sha256 checksums
    frames.npy          background frames, uint8 (N, H, W, 3) BGR, memory-mapped at run time
    crop_rects.json     one [x1, y1, x2, y2] (half-open, square) per frame
    unet.onnx           UNet: visual [B,6,320,320] + audio [B,32,16,16] -> [B,3,320,320]
    audio_encoder.onnx  AVE encoder: [B,1,80,16] -> [B,512]
    aud_ave.npy         optional pre-extracted features, (K, 512) float32
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np

from lipsync_render import __version__
from lipsync_render.errors import PackageError

FORMAT = "lipsync-package"
FORMAT_VERSION = 1
MANIFEST = "package.json"
PACKAGES_ENV = "LIPSYNC_PACKAGES"
PROJECT_PACKAGES = Path(__file__).resolve().parents[1] / "packages"

UNET_INPUT_SHAPES = ((6, 320, 320), (32, 16, 16))
UNET_OUTPUT_SHAPE = (3, 320, 320)
ENCODER_INPUT_SHAPE = (1, 80, 16)
ENCODER_OUTPUT_SHAPE = (512,)


@dataclass
class ModelIO:
    """Input and output tensor names of one ONNX model."""

    inputs: list[str]
    outputs: list[str]


@dataclass
class Package:
    """A validated model package, ready to render with."""

    root: Path
    name: str
    fps: int
    width: int
    height: int
    frames: np.ndarray  # (N, H, W, 3) uint8 BGR, memory-mapped
    rects: np.ndarray  # (N, 4) int32 [x1, y1, x2, y2]
    unet_path: Path
    encoder_path: Path
    unet_io: ModelIO
    encoder_io: ModelIO
    features: np.ndarray | None = None  # (K, 512) float32, memory-mapped
    manifest: dict = field(default_factory=dict, repr=False)

    @property
    def frame_count(self) -> int:
        return int(self.frames.shape[0])

    @property
    def frames_path(self) -> Path:
        return self.root / self.manifest["files"]["frames"]

    @property
    def checksum(self) -> str:
        """One digest for the whole package: the hash of its manifest (which holds every file's checksum)."""
        return sha256_file(self.root / MANIFEST)


def sha256_file(path: Path, chunk_size: int = 1 << 24) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def resolve_package_path(name: str | os.PathLike) -> Path:
    """Find a package by path, then as ``packages/NAME`` here, then in ``$LIPSYNC_PACKAGES``."""
    text = str(name)
    direct = Path(text).expanduser()
    if direct.is_dir() or os.sep in text or text.startswith("."):
        if not direct.is_dir():
            raise PackageError(f"Model package directory {direct} does not exist.")
        return direct
    candidates = [Path.cwd() / "packages" / text]
    candidates += [Path(p) / text for p in os.environ.get(PACKAGES_ENV, "").split(os.pathsep) if p]
    candidates.append(PROJECT_PACKAGES / text)
    for candidate in candidates:
        if candidate.is_dir():
            return candidate
    looked = ", ".join(dict.fromkeys(str(c.parent) for c in candidates))
    raise PackageError(f"Unknown model '{text}': no package directory of that name in {looked}.")


def load_package(name: str | os.PathLike, verify_checksums: bool = True) -> Package:
    """Load and validate a package; raises PackageError naming the first problem."""
    root = resolve_package_path(name)
    problems, package = _check(root, verify_checksums)
    if problems:
        more = f" ({len(problems) - 1} more: run 'lipsync package validate {root}')" if len(problems) > 1 else ""
        raise PackageError(problems[0] + more)
    return package


def validate_package(name: str | os.PathLike, verify_checksums: bool = True) -> list[str]:
    """All problems of a package, one sentence each; empty when it is valid."""
    try:
        root = resolve_package_path(name)
    except PackageError as exc:
        return [str(exc)]
    return _check(root, verify_checksums)[0]


def _check(root: Path, verify_checksums: bool) -> tuple[list[str], Package | None]:
    """Validate everything up front; returns (problems, package or None)."""
    manifest_path = root / MANIFEST
    if not manifest_path.is_file():
        return [f"{manifest_path} is missing: not a model package."], None
    try:
        manifest = json.loads(manifest_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        return [f"{manifest_path} is not valid JSON ({exc})."], None
    problems = _check_manifest(manifest, manifest_path)
    if problems:
        return problems, None

    files = manifest["files"]
    paths = {role: root / rel for role, rel in files.items() if rel}
    for role, path in paths.items():
        if not path.is_file():
            problems.append(f"{path} is missing (the manifest lists it as the {role} file).")
    if problems:
        return problems, None

    if verify_checksums:
        for rel, expected in manifest.get("checksums", {}).items():
            if (root / rel).is_file() and sha256_file(root / rel) != expected:
                problems.append(f"{root / rel} does not match its checksum in {MANIFEST}: the file was changed or is corrupt.")

    frames = _load_frames(paths["frames"], manifest, problems)
    rects = _load_rects(paths["rects"], manifest, problems)
    if frames is not None and rects is not None and len(frames) != len(rects):
        problems.append(f"{paths['rects']} has {len(rects)} rectangles but {paths['frames']} has {len(frames)} frames.")
    unet_io = _check_model(paths["unet"], manifest["models"]["unet"], UNET_INPUT_SHAPES, UNET_OUTPUT_SHAPE, problems)
    encoder_io = _check_model(
        paths["encoder"], manifest["models"]["encoder"], (ENCODER_INPUT_SHAPE,), ENCODER_OUTPUT_SHAPE, problems
    )
    features = _load_features(paths["features"], problems) if "features" in paths else None
    if problems:
        return problems, None
    package = Package(
        root=root,
        name=manifest["name"],
        fps=int(manifest["fps"]),
        width=int(manifest["width"]),
        height=int(manifest["height"]),
        frames=frames,
        rects=rects,
        unet_path=paths["unet"],
        encoder_path=paths["encoder"],
        unet_io=unet_io,
        encoder_io=encoder_io,
        features=features,
        manifest=manifest,
    )
    return [], package


def _check_manifest(manifest: object, path: Path) -> list[str]:
    if not isinstance(manifest, dict):
        return [f"{path} must hold a JSON object."]
    if manifest.get("format") != FORMAT:
        return [f"{path} is not a lipsync package manifest (its 'format' is not '{FORMAT}')."]
    if manifest.get("format_version") != FORMAT_VERSION:
        return [f"{path} has format_version {manifest.get('format_version')!r}; this tool reads version {FORMAT_VERSION}."]
    problems = []
    for key, kind in (("name", str), ("fps", int), ("width", int), ("height", int), ("frame_count", int),
                      ("files", dict), ("models", dict)):
        if not isinstance(manifest.get(key), kind):
            problems.append(f"{path} lacks a valid '{key}' entry ({kind.__name__}).")
    if problems:
        return problems
    for role in ("frames", "rects", "unet", "encoder"):
        if not isinstance(manifest["files"].get(role), str):
            problems.append(f"{path} does not name a '{role}' file under 'files'.")
    for role in ("unet", "encoder"):
        entry = manifest["models"].get(role)
        if not (isinstance(entry, dict) and isinstance(entry.get("inputs"), list) and isinstance(entry.get("outputs"), list)):
            problems.append(f"{path} lacks the input/output names of the {role} model under 'models'.")
    return problems


def _load_frames(path: Path, manifest: dict, problems: list[str]) -> np.ndarray | None:
    try:
        frames = np.load(path, mmap_mode="r")
    except (ValueError, OSError) as exc:
        problems.append(f"{path} is not a readable .npy frame array ({exc}).")
        return None
    expected = (manifest["frame_count"], manifest["height"], manifest["width"], 3)
    if frames.dtype != np.uint8 or frames.shape != expected:
        problems.append(f"{path} holds {frames.dtype} {frames.shape} but the manifest says uint8 {expected}.")
        return None
    return frames


def _load_rects(path: Path, manifest: dict, problems: list[str]) -> np.ndarray | None:
    try:
        rects = np.asarray(json.loads(path.read_text()))
    except (json.JSONDecodeError, UnicodeDecodeError, ValueError) as exc:
        problems.append(f"{path} is not valid JSON ({exc}).")
        return None
    if rects.ndim != 2 or rects.shape[1] != 4 or not np.issubdtype(rects.dtype, np.integer):
        problems.append(f"{path} must be a list of [x1, y1, x2, y2] integer rectangles.")
        return None
    rects = rects.astype(np.int32)
    width, height = manifest["width"], manifest["height"]
    x1, y1, x2, y2 = rects.T
    outside = np.flatnonzero((x1 < 0) | (y1 < 0) | (x2 > width) | (y2 > height) | (x2 <= x1) | (y2 <= y1))
    if outside.size:
        i = int(outside[0])
        problems.append(f"{path}: rectangle {i} {rects[i].tolist()} lies outside the {width}x{height} frame "
                        f"({outside.size} such rectangles).")
    not_square = np.flatnonzero((x2 - x1) != (y2 - y1))
    if not_square.size:
        i = int(not_square[0])
        problems.append(f"{path}: rectangle {i} {rects[i].tolist()} is not square ({not_square.size} such rectangles).")
    return rects


def _load_features(path: Path, problems: list[str]) -> np.ndarray | None:
    try:
        features = np.load(path, mmap_mode="r")
    except (ValueError, OSError) as exc:
        problems.append(f"{path} is not a readable .npy array ({exc}).")
        return None
    if features.dtype != np.float32 or features.ndim != 2 or features.shape[1] != 512:
        problems.append(f"{path} holds {features.dtype} {features.shape}; pre-extracted features must be float32 (K, 512).")
        return None
    return features


def read_model_io(path: Path) -> tuple[list[tuple[str, list]], list[tuple[str, list]]]:
    """(name, dims) of a model's graph inputs and outputs, without loading its weights."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    initializers = {init.name for init in model.graph.initializer}

    def dims(value_info) -> list:
        shape = value_info.type.tensor_type.shape
        return [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in shape.dim]

    inputs = [(v.name, dims(v)) for v in model.graph.input if v.name not in initializers]
    outputs = [(v.name, dims(v)) for v in model.graph.output]
    return inputs, outputs


def _check_model(path: Path, names: dict, input_shapes: tuple, output_shape: tuple, problems: list[str]) -> ModelIO | None:
    """Check a model's inputs/outputs against the contract and the manifest's names."""
    try:
        inputs, outputs = read_model_io(path)
    except Exception as exc:  # onnx raises several unrelated types for a damaged file
        problems.append(f"{path} is not a readable ONNX model ({type(exc).__name__}).")
        return None
    before = len(problems)
    if [n for n, _ in inputs] != names["inputs"] or [n for n, _ in outputs][: len(names["outputs"])] != names["outputs"]:
        problems.append(f"{path} has inputs {[n for n, _ in inputs]} and outputs {[n for n, _ in outputs]}, "
                        f"not the {names['inputs']} -> {names['outputs']} the manifest names.")
    elif len(inputs) != len(input_shapes):
        problems.append(f"{path} takes {len(inputs)} inputs; the contract has {len(input_shapes)}.")
    else:
        for (name, dims), expected in zip(inputs, input_shapes):
            if not _fits(dims, expected):
                problems.append(f"{path} input '{name}' has shape {dims}; the contract is [batch, {', '.join(map(str, expected))}].")
        name, dims = outputs[0]
        if not _fits(dims, output_shape):
            problems.append(f"{path} output '{name}' has shape {dims}; the contract is [batch, {', '.join(map(str, output_shape))}].")
    return ModelIO(inputs=names["inputs"], outputs=names["outputs"]) if len(problems) == before else None


def _fits(dims: list, expected: tuple) -> bool:
    """A batch axis (symbolic or fixed) followed by exactly the expected dims (symbolic dims accepted)."""
    if len(dims) != len(expected) + 1:
        return False
    return all(not isinstance(d, int) or d == e for d, e in zip(dims[1:], expected))


def write_package(
    dest: str | os.PathLike,
    name: str,
    frames: Iterable[np.ndarray],
    frame_count: int,
    rects: np.ndarray,
    unet: str | os.PathLike | bytes,
    encoder: str | os.PathLike | bytes,
    features: np.ndarray | None = None,
    fps: int = 25,
    created_by: str = "",
    extra: dict | None = None,
) -> Path:
    """Write a package atomically (into a temporary sibling, renamed at the end) and return its path.

    ``frames`` is an iterable of (H, W, 3) uint8 BGR frames, streamed into a memory-mapped array;
    ``unet``/``encoder`` are ONNX files or serialized model bytes.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    try:
        height = width = None
        store = None
        count = 0
        for frame in frames:
            if store is None:
                height, width = frame.shape[:2]
                store = np.lib.format.open_memmap(staging / "frames.npy", mode="w+", dtype=np.uint8,
                                                  shape=(frame_count, height, width, 3))
            if count >= frame_count or frame.shape != (height, width, 3):
                raise PackageError(f"Frame {count} has shape {frame.shape}; expected {frame_count} frames of ({height}, {width}, 3).")
            store[count] = frame
            count += 1
        if store is None or count != frame_count:
            raise PackageError(f"Got {count} frames for a package of {frame_count}.")
        store.flush()
        del store
        rects = np.asarray(rects, dtype=np.int64)
        (staging / "crop_rects.json").write_text(json.dumps(rects.tolist()))
        _put_model(unet, staging / "unet.onnx")
        _put_model(encoder, staging / "audio_encoder.onnx")
        files = {"frames": "frames.npy", "rects": "crop_rects.json", "unet": "unet.onnx", "encoder": "audio_encoder.onnx"}
        if features is not None:
            np.save(staging / "aud_ave.npy", np.ascontiguousarray(features, dtype=np.float32))
            files["features"] = "aud_ave.npy"
        models = {}
        for role, filename in (("unet", "unet.onnx"), ("encoder", "audio_encoder.onnx")):
            inputs, outputs = read_model_io(staging / filename)
            models[role] = {"inputs": [n for n, _ in inputs], "outputs": [n for n, _ in outputs]}
        manifest = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "name": name,
            "fps": fps,
            "width": int(width),
            "height": int(height),
            "frame_count": frame_count,
            "files": files,
            "models": models,
            "checksums": {rel: sha256_file(staging / rel) for rel in files.values()},
            "created_by": created_by or f"lipsync-render {__version__}",
            **(extra or {}),
        }
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        if dest.exists():
            shutil.rmtree(dest)
        staging.rename(dest)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return dest


def _put_model(model: str | os.PathLike | bytes, target: Path) -> None:
    if isinstance(model, bytes):
        target.write_bytes(model)
    else:
        shutil.copyfile(model, target)
