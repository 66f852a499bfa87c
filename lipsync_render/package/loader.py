"""Model packages: the manifest, validation, background frames, crop rectangles and model files.

A package is a directory (format documented in ``packages/README.md``)::

    package.json        manifest: format version, name, fps, frame size and count, file names,
                        model input/output names, sha256 checksums
    frames.npy          background frames, uint8 (N, H, W, 3) BGR, memory-mapped at run time
    crop_rects.json     one [x1, y1, x2, y2] (half-open, square) per frame
    unet.onnx           UNet: visual [B,6,320,320] + audio [B,32,16,16] -> [B,3,320,320] (see contract.py)
    audio_encoder.onnx  AVE encoder: [B,1,80,16] -> [B,512]
    aud_ave.npy         optional pre-extracted features, (K, 512) float32
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lipsync_render.contract import AUDIO_ENCODER, UNET, ModelIO, check_features, check_model, check_rects, parse_rects
from lipsync_render.errors import PackageError

FORMAT = "lipsync-package"
FORMAT_VERSION = 1
MANIFEST = "package.json"
PACKAGES_ENV = "LIPSYNC_PACKAGES"


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
    audio_encoder_path: Path
    unet_io: ModelIO
    audio_encoder_io: ModelIO
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


def package_search_dirs() -> list[Path]:
    """Where ``--model NAME`` looks, in order: ``./packages``, then each ``$LIPSYNC_PACKAGES`` entry."""
    return [Path.cwd() / "packages", *(Path(p) for p in os.environ.get(PACKAGES_ENV, "").split(os.pathsep) if p)]


def resolve_package_path(name: str | os.PathLike) -> Path:
    """Find a package by path, else by name in :func:`package_search_dirs`."""
    text = str(name)
    direct = Path(text).expanduser()
    if direct.is_dir() or os.sep in text or text.startswith("."):
        if not direct.is_dir():
            raise PackageError(f"Model package directory {direct} does not exist.")
        return direct
    candidates = [folder / text for folder in package_search_dirs()]
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
                problems.append(
                    f"{root / rel} does not match its checksum in {MANIFEST}: the file was changed or is corrupt."
                )

    frames = _load_frames(paths["frames"], manifest, problems)
    rects = _load_rects(paths["rects"], manifest, problems)
    if frames is not None and rects is not None and len(frames) != len(rects):
        problems.append(f"{paths['rects']} has {len(rects)} rectangles but {paths['frames']} has {len(frames)} frames.")
    models = {}
    for contract in (UNET, AUDIO_ENCODER):
        found, models[contract.key] = check_model(paths[contract.key], contract, manifest["models"][contract.key])
        problems += found
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
        audio_encoder_path=paths["encoder"],
        unet_io=models["unet"],
        audio_encoder_io=models["encoder"],
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
        return [
            f"{path} has format_version {manifest.get('format_version')!r}; this tool reads version {FORMAT_VERSION}."
        ]
    problems = []
    for key, kind in (
        ("name", str),
        ("fps", int),
        ("width", int),
        ("height", int),
        ("frame_count", int),
        ("files", dict),
        ("models", dict),
    ):
        if not isinstance(manifest.get(key), kind):
            problems.append(f"{path} lacks a valid '{key}' entry ({kind.__name__}).")
    if problems:
        return problems
    for role in ("frames", "rects", "unet", "encoder"):
        if not isinstance(manifest["files"].get(role), str):
            problems.append(f"{path} does not name a '{role}' file under 'files'.")
    for role in ("unet", "encoder"):
        entry = manifest["models"].get(role)
        if not (
            isinstance(entry, dict) and isinstance(entry.get("inputs"), list) and isinstance(entry.get("outputs"), list)
        ):
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
        rects = parse_rects(json.loads(path.read_text()), path)
    except (json.JSONDecodeError, UnicodeDecodeError, ValueError) as exc:
        problems.append(f"{path} is not valid JSON ({exc}).")
        return None
    except PackageError as exc:
        problems.append(str(exc))
        return None
    found = check_rects(rects, manifest["width"], manifest["height"], path)
    problems += found
    return None if found else rects.astype(np.int32)


def _load_features(path: Path, problems: list[str]) -> np.ndarray | None:
    try:
        features = np.load(path, mmap_mode="r")
    except (ValueError, OSError) as exc:
        problems.append(f"{path} is not a readable .npy array ({exc}).")
        return None
    found = check_features(features, path)
    problems += found
    return None if found else features
