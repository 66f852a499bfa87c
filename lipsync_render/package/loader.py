"""Model packages: the manifest, validation, background frames, crop rectangles and model files.

A package is a directory (format documented in ``packages/README.md``)::

    package.json        manifest: format version, name, fps, frame size and count, file names,
                        model input/output names, sha256 checksums
    frames.npy          background frames, uint8 (N, H, W, 3) BGR, memory-mapped at run time; or, with the jpeg
                        frames store, frames.jpg.bin + frames.index.npy (tiled JPEG, see frame_store.py)
    crop_rects.json     one [x1, y1, x2, y2] (half-open, square) per frame, or null: no face (format version 3)
    unet.onnx           UNet: visual [B,6,320,320] + audio [B,32,16,16] -> [B,3,320,320] (see contract.py)
    audio_encoder.onnx  AVE encoder: [B,1,80,16] -> [B,512]
    aud_ave.npy         optional pre-extracted features, (K, 512) float32
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lipsync_render.contract import (
    AUDIO_ENCODER,
    UNET,
    ModelContract,
    ModelIO,
    check_features,
    check_model,
    check_rects,
    face_rows,
    parse_rects,
)
from lipsync_render.errors import PackageError
from lipsync_render.package.frame_store import FrameStore, open_frame_store, verify_frames
from lipsync_render.package.locate import resolve_package_path
from lipsync_render.package.manifest import (
    MANIFEST,
    NULL_RECTS_VERSION,
    check_manifest,
    checksum_entries,
    file_paths,
    input_files,
    read_json,
    read_manifest,
)
from lipsync_render.package.verified import mismatched_files, verify_mode

MAX_RECTS_BYTES = 64 << 20


@dataclass
class Package:
    """A validated model package, ready to render with."""

    root: Path
    name: str
    fps: int
    width: int
    height: int
    frames: FrameStore  # (N, H, W, 3) uint8 BGR by index: memory-mapped npy or decoded JPEG tiles
    rects: np.ndarray  # (N, 4) int32 [x1, y1, x2, y2]; a frame without a face has its nearest face's rectangle
    unet_path: Path
    audio_encoder_path: Path
    unet_io: ModelIO
    audio_encoder_io: ModelIO
    features: np.ndarray | None = None  # (K, 512) float32, memory-mapped
    faces: np.ndarray | None = None  # (N,) bool, False where a frame has no face (its rectangle in the file is null)
    manifest: dict = field(default_factory=dict, repr=False)

    @property
    def frame_count(self) -> int:
        return len(self.frames)

    @property
    def files(self) -> tuple[Path, ...]:
        """Every file of the package no output may replace (see manifest.input_files)."""
        return input_files(self.root, self.manifest)

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


@dataclass
class PackageReport:
    """What validating a package found: problems (it cannot be used) and warnings (it can, with a caveat)."""

    problems: list[str]
    warnings: list[str]
    package: Package | None = None


def load_package(name: str | os.PathLike, verify_checksums: bool = True) -> Package:
    """Load and validate a package; raises PackageError naming the first problem.

    Checksums are verified once and trusted while a file is unchanged on disk (``package.verified``);
    ``LIPSYNC_VERIFY=full`` hashes every file on every load."""
    root = resolve_package_path(name)
    trust = verify_checksums and verify_mode() != "full"
    report = check_package(root, verify_checksums, trust_record=trust, record=verify_checksums)
    if report.problems:
        problems = report.problems
        more = f" ({len(problems) - 1} more: run 'lipsync package validate {root}')" if len(problems) > 1 else ""
        raise PackageError(problems[0] + more)
    return report.package


def validate_package(name: str | os.PathLike, verify_checksums: bool = True) -> list[str]:
    """All problems of a package, one sentence each; empty when it is valid."""
    return check_package(name, verify_checksums).problems


def check_package(
    name: str | os.PathLike,
    verify_checksums: bool = True,
    decode_frames: bool = False,
    trust_record: bool = False,
    record: bool = False,
) -> PackageReport:
    """Validate everything render would refuse, up front; ``decode_frames`` also decodes every compressed frame.

    Every checksum is verified by hashing the file unless ``trust_record``: then a file the verified record says
    matched, and whose identity on disk has not changed since, is not hashed again (``package.verified``).
    ``record`` (implied by ``trust_record``) writes the files that matched into that record."""
    try:
        root = resolve_package_path(name)
    except PackageError as exc:
        return PackageReport([str(exc)], [])
    manifest, problems = read_manifest(root / MANIFEST)
    if manifest is None:
        return PackageReport(problems, [])
    problems = check_manifest(manifest, root / MANIFEST)
    if problems:
        return PackageReport(problems, [])
    paths, problems = file_paths(manifest, root)
    checksums, checksum_problems, warnings = checksum_entries(manifest, root)
    problems += checksum_problems
    if problems:
        return PackageReport(problems, warnings)
    if verify_checksums:
        problems += [
            f"{path} does not match its checksum in {MANIFEST}: the file was changed or is corrupt."
            for path in _mismatched(root, checksums, trust_record, record or trust_record)
        ]
    frames = _load_frames(paths, manifest, problems)
    if frames is not None and decode_frames:
        problems += verify_frames(frames)
    rects, faces = _load_rects(paths["rects"], manifest, problems)
    models = {}
    for contract in (UNET, AUDIO_ENCODER):
        found, models[contract.key] = check_model(paths[contract.key], contract, manifest["models"][contract.key], root)
        problems += found
        if not found and models[contract.key].symbolic_output:
            problems += probe_output_shape(paths[contract.key], contract)
    features = _load_features(paths["features"], problems) if "features" in paths else None
    if problems:
        return PackageReport(problems, warnings)
    package = Package(
        root=root,
        name=manifest["name"],
        fps=manifest["fps"],
        width=manifest["width"],
        height=manifest["height"],
        frames=frames,
        rects=rects,
        unet_path=paths["unet"],
        audio_encoder_path=paths["encoder"],
        unet_io=models["unet"],
        audio_encoder_io=models["encoder"],
        features=features,
        faces=faces,
        manifest=manifest,
    )
    return PackageReport([], warnings, package)


def _mismatched(root: Path, checksums: dict[Path, str], trust_record: bool, record: bool) -> list[Path]:
    if not record or not checksums:
        return [path for path, expected in checksums.items() if sha256_file(path) != expected]
    manifest_digest = sha256_file(root / MANIFEST)
    return mismatched_files(root, manifest_digest, checksums, sha256_file, trust_record)


def _load_frames(paths: dict[str, Path], manifest: dict, problems: list[str]) -> FrameStore | None:
    try:
        return open_frame_store(paths, manifest)
    except PackageError as exc:
        problems.append(str(exc))
        return None


def _load_rects(path: Path, manifest: dict, problems: list[str]) -> tuple[np.ndarray | None, np.ndarray | None]:
    """(rectangles with each faceless frame's filled in from the nearest face, faces), or (None, None)."""
    data, found = read_json(path, MAX_RECTS_BYTES)
    if data is None:
        problems += found
        return None, None
    version = manifest["format_version"]
    if version < NULL_RECTS_VERSION and isinstance(data, list) and None in data:
        problems.append(
            f"{path} has a null rectangle (frame {data.index(None)}: no face), which needs package format version "
            f"{NULL_RECTS_VERSION}; this package says version {version}."
        )
        return None, None
    try:
        rects = parse_rects(data, path, allow_null=version >= NULL_RECTS_VERSION)
    except PackageError as exc:
        problems.append(str(exc))
        return None, None
    if len(rects) != manifest["frame_count"]:
        problems.append(f"{path} has {len(rects)} rectangles but the package has {manifest['frame_count']} frames.")
        return None, None
    faces = face_rows(rects)
    if not faces.any():
        problems.append(
            f"{path} marks every frame as having no face (all rectangles null): there is nothing to render."
        )
        return None, None
    found = check_rects(rects, manifest["width"], manifest["height"], path)
    problems += found
    return (None, None) if found else (nearest_face_rects(rects, faces).astype(np.int32), faces)


def nearest_face_rects(rects: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """The rectangles with each null one replaced by the nearest face's (the earlier one on a tie), so code that
    only needs a valid crop of any frame (calibration, benchmarks) never meets a null."""
    have = np.flatnonzero(faces)
    after = np.minimum(np.searchsorted(have, np.arange(len(rects))), len(have) - 1)
    before = np.maximum(after - 1, 0)
    index = np.arange(len(rects))
    nearest = np.where(np.abs(have[before] - index) <= np.abs(have[after] - index), have[before], have[after])
    return rects[nearest]


def _load_features(path: Path, problems: list[str]) -> np.ndarray | None:
    try:
        features = np.load(path, mmap_mode="r")
    except (ValueError, OSError) as exc:
        problems.append(f"{path} is not a readable .npy array ({exc}).")
        return None
    found = check_features(features, path)
    problems += found
    return None if found else features


def probe_output_shape(path: Path, contract: ModelContract) -> list[str]:
    """For a model that declares symbolic output dims: run one zero sample on the CPU and check what comes out."""
    import onnxruntime as ort

    try:
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        feeds = {i.name: np.zeros((1, *shape), np.float32) for i, shape in zip(session.get_inputs(), contract.inputs)}
        output = session.run(None, feeds)[0]
    except Exception as exc:  # ONNX Runtime raises its own types for a model it cannot run
        return [
            f"The {contract.label} model {path} cannot be run on one zero sample ({str(exc).splitlines()[0][:160]})."
        ]
    if tuple(output.shape) != (1, *contract.output):
        return [
            f"The {contract.label} model {path} gives shape {list(output.shape)} for one sample; the contract is "
            f"[1, {', '.join(map(str, contract.output))}]."
        ]
    return []
