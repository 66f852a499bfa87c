"""Writing model packages atomically: frames streamed into their store, manifest with checksums."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from lipsync_render import __version__
from lipsync_render.contract import face_rows, read_model_io
from lipsync_render.errors import PackageError
from lipsync_render.package.frame_writer import frame_writer
from lipsync_render.package.loader import sha256_file
from lipsync_render.package.manifest import FORMAT, MANIFEST, NULL_RECTS_VERSION
from lipsync_render.paths import honour_umask
from lipsync_render.store_choice import StoreChoice


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
    frames_store: StoreChoice = StoreChoice(),
) -> Path:
    """Write a package atomically (into a temporary sibling, renamed at the end) and return its path.

    ``frames`` is an iterable of (H, W, 3) uint8 BGR frames, streamed into the ``frames_store`` (default npy);
    ``unet``/``encoder`` are ONNX files or serialized model bytes.
    """
    dest = Path(dest)
    if dest.is_symlink() or (dest.exists() and not (dest.is_dir() and (dest / MANIFEST).is_file())):
        raise PackageError(f"{dest} already exists and is not a model package; refusing to replace it.")
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    writer = frame_writer(frames_store, staging, frame_count)
    try:
        for frame in frames:
            writer.add(frame)
        files = writer.finish()
        height, width = writer.shape[:2]
        rects = np.asarray(rects, dtype=np.int64).reshape(-1, 4)
        faces = face_rows(rects)
        rows = [row if face else None for row, face in zip(rects.tolist(), faces.tolist())]
        (staging / "crop_rects.json").write_text(json.dumps(rows))
        _put_model(unet, staging / "unet.onnx")
        _put_model(encoder, staging / "audio_encoder.onnx")
        files = {
            **files,
            "rects": "crop_rects.json",
            "unet": "unet.onnx",
            "encoder": "audio_encoder.onnx",
        }
        if features is not None:
            np.save(staging / "aud_ave.npy", np.ascontiguousarray(features, dtype=np.float32))
            files["features"] = "aud_ave.npy"
        models = {}
        for role, filename in (("unet", "unet.onnx"), ("encoder", "audio_encoder.onnx")):
            inputs, outputs = read_model_io(staging / filename)
            models[role] = {"inputs": [n for n, _ in inputs], "outputs": [n for n, _ in outputs]}
        manifest = {
            "format": FORMAT,
            "format_version": NULL_RECTS_VERSION if not faces.all() else 2,  # what older readers can read
            "name": name,
            "fps": fps,
            "width": int(width),
            "height": int(height),
            "frame_count": frame_count,
            "frames_store": frames_store.manifest_entry(),
            "files": files,
            "models": models,
            "checksums": {rel: sha256_file(staging / rel) for rel in files.values()},
            "created_by": created_by or f"lipsync-render {__version__}",
            **(extra or {}),
        }
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        if dest.exists():
            shutil.rmtree(dest)
        honour_umask(staging)
        staging.rename(dest)
    except BaseException:
        writer.close()
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return dest


def _put_model(model: str | os.PathLike | bytes, target: Path) -> None:
    if isinstance(model, bytes):
        target.write_bytes(model)
    else:
        shutil.copyfile(model, target)
