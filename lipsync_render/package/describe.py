"""Human-readable descriptions of a model package: the full one (`lipsync package inspect`) and the short
summary `lipsync package build` prints of the package it just built."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from lipsync_render import json_bounded
from lipsync_render.contract import count_parameters, read_model_io
from lipsync_render.package import MANIFEST, Package, load_package
from lipsync_render.store_choice import store_choice


def describe_package(name: str | os.PathLike) -> str:
    """Manifest, frames, duration, rectangle statistics, model I/O and parameter counts, as text."""
    package = load_package(name)
    lines = [
        f"package    {package.name}  ({package.root})",
        f"format     {package.manifest['format']} v{package.manifest['format_version']}, "
        f"created by {package.manifest.get('created_by', '?')}",
        f"frames     {package.frame_count} x {package.width}x{package.height} BGR at {package.fps} fps "
        f"= {package.frame_count / package.fps:.2f} s",
        f"store      {_store_line(package)}",
        *_rect_lines(package),
        *_model_lines("unet", package.unet_path),
        *_model_lines("encoder", package.audio_encoder_path),
        f"features   {_features_line(package)}",
    ]
    extra = {
        k: v
        for k, v in package.manifest.items()
        if k
        not in {
            "format",
            "format_version",
            "name",
            "fps",
            "width",
            "height",
            "frame_count",
            "files",
            "frames_store",
            "models",
            "checksums",
            "created_by",
        }
    }
    if extra:
        lines.append(f"extra      {json.dumps(extra)}")
    return "\n".join(lines)


def _store_line(package: Package) -> str:
    store = package.frames
    size = store.disk_bytes
    return (
        f"{store_choice(package.manifest)} ({' + '.join(p.name for p in store.files)}), {size / 2**20:.1f} MiB, "
        f"{size / len(store) / 2**20:.3f} MiB a frame ({size / (len(store) * np.prod(store.shape[1:])):.1%} of raw)"
    )


def faceless_line(package: Package) -> str | None:
    """How many frames have no face (null rectangles), or None when every frame has one."""
    faces = package.faces
    if faces is None or faces.all():
        return None
    missing = int((~faces).sum())
    return (
        f"{missing} of {len(faces)} frames have no face (null rectangles, first: frame {int(np.argmin(faces))}); "
        "render shows them as the package frame"
    )


def _rect_lines(package: Package) -> list[str]:
    rects = package.rects if package.faces is None else package.rects[package.faces]
    sides = rects[:, 2] - rects[:, 0]
    centres = (rects[:, :2] + rects[:, 2:]) / 2
    faceless = faceless_line(package)
    return [
        *([f"faceless   {faceless}"] if faceless else []),
        f"rects      {len(rects)} squares, side {sides.min()}-{sides.max()} (mean {sides.mean():.1f}), "
        f"x1 {rects[:, 0].min()}-{rects[:, 0].max()}, y1 {rects[:, 1].min()}-{rects[:, 1].max()}",
        f"           centre motion: std x {centres[:, 0].std():.2f} px, y {centres[:, 1].std():.2f} px",
    ]


def _model_lines(role: str, path) -> list[str]:
    import onnx

    inputs, outputs = read_model_io(path)
    params = count_parameters(onnx.load(str(path)))
    signature = (
        ", ".join(f"{n} {list(d)}" for n, d in inputs) + " -> " + ", ".join(f"{n} {list(d)}" for n, d in outputs)
    )
    return [
        f"{role:<10} {path.name} ({path.stat().st_size / 2**20:.1f} MiB, {params / 1e6:.3f} M parameters)",
        f"           {signature}",
    ]


def _features_line(package: Package) -> str:
    if package.features is None:
        return "none (computed from audio at render time)"
    table = np.asarray(package.features)
    return (
        f"{package.manifest['files']['features']} {table.shape}, "
        f"{len(table) / package.fps:.2f} s, min {table.min():.3f} max {table.max():.3f} mean {table.mean():.3f}"
    )


def describe_build(path: str | os.PathLike) -> str:
    """A short summary of a freshly built package: frames, size, rectangles, models, features."""
    path = Path(path)
    manifest = json_bounded.read(path / MANIFEST)
    files = manifest["files"]
    rows = json_bounded.read(path / files["rects"], 64 << 20)
    rects = np.asarray([row for row in rows if row is not None], dtype=np.int64)
    sizes = rects[:, 2] - rects[:, 0]
    faceless = len(rows) - len(rects)
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
    if faceless:
        lines.append(
            f"  faceless: {faceless} of {len(rows)} frames have no face (missing or degenerate landmarks): "
            "null rectangles, shown as the package frame"
        )
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
