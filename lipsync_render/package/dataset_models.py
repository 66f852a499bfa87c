"""The two ONNX models a package is built with: found in the dataset when not given, checked against the contract."""

from __future__ import annotations

import os
from pathlib import Path

from lipsync_render.contract import ModelContract, check_model
from lipsync_render.errors import PackageError

DEFAULT_UNETS = ("checkpoint/model_best.onnx",)
DEFAULT_ENCODERS = ("audio_encoder.onnx", "models/audio_encoder.onnx", "checkpoint/audio_encoder.onnx")


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
