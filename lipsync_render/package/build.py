"""Build model packages from SyncTalk_2D training data (reference spec §5.1, §5.2, §8).

The dataset is read by ``datasets`` (layouts, ``landmarks`` to rectangles, ``dataset_video``), the models are
found by ``dataset_models``; this module checks everything, then streams the frames into the package. Nothing is
written before every input is checked, and nothing is left behind when anything fails.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from lipsync_render.contract import AUDIO_ENCODER, UNET, check_rects, face_rows
from lipsync_render.errors import PackageError
from lipsync_render.package.dataset_models import DEFAULT_ENCODERS, DEFAULT_UNETS, find_model, require_model
from lipsync_render.package.datasets import open_dataset
from lipsync_render.package.landmarks import smooth_rects
from lipsync_render.package.loader import MANIFEST, validate_package
from lipsync_render.package.writer import write_package
from lipsync_render.paths import folder_replacement_problem
from lipsync_render.store_choice import StoreChoice


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

    problem = folder_replacement_problem(dest, (dataset, unet, encoder, video)) if dest.exists() else None
    if problem:  # before anything reads the inputs: a rebuilt package replaces its folder whole
        raise PackageError(problem)
    source = open_dataset(dataset, video)
    unet_path = find_model(unet, dataset, DEFAULT_UNETS, "UNet", "--unet")
    audio_encoder_path = find_model(encoder, dataset, DEFAULT_ENCODERS, "audio encoder", "--encoder")
    inputs = (dataset, unet_path, audio_encoder_path, video)
    problem = folder_replacement_problem(dest, inputs) if dest.exists() else None
    if problem:
        raise PackageError(problem)
    require_model(unet_path, UNET)
    require_model(audio_encoder_path, AUDIO_ENCODER)
    if not face_rows(source.rects).any():
        raise PackageError(
            f"No frame of {source.rects_origin} has a face (every rectangle missing or degenerate): nothing to render."
        )
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
