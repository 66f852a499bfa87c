"""Parity of an ONNX export with its PyTorch model, judged against float64 rather than a fixed fp32 limit."""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

PARITY_FLOOR = 1e-4  # ONNX Runtime may always differ from the float64 reference by this much
PARITY_NOISE_FACTOR = 4.0  # ... or by this many times PyTorch fp32's own distance from it


@dataclass(frozen=True)
class Parity:
    """How far an export is from its model: both fp32 runtimes against a float64 run of the PyTorch model."""

    onnx_error: float  # max |ONNX Runtime fp32 - PyTorch fp64|
    torch_error: float  # max |PyTorch fp32 - PyTorch fp64|: the model's own fp32 noise
    limit: float  # what onnx_error may be
    checked: bool = True

    @property
    def ok(self) -> bool:
        return self.onnx_error <= self.limit  # False for NaN

    def describe(self) -> str:
        if not self.checked:
            return "not checked"
        return (
            f"max |onnx - fp64| = {self.onnx_error:.2g}, PyTorch fp32's own {self.torch_error:.2g}, "
            f"limit {self.limit:.2g}"
        )


UNCHECKED = Parity(math.nan, math.nan, math.nan, checked=False)


def parity_limit(torch_error: float, tolerance: float | None = None) -> float:
    """The largest ONNX Runtime error accepted: fp32 noise of the model itself, scaled, or an explicit tolerance."""
    return tolerance if tolerance is not None else max(PARITY_FLOOR, PARITY_NOISE_FACTOR * torch_error)


def parity(model, onnx_path: Path, inputs: tuple, tolerance: float | None = None) -> Parity:
    """ONNX Runtime (CPU, fp32) and PyTorch fp32 against PyTorch in float64 on the same inputs.

    A fixed limit against PyTorch fp32 fails sound exports of models whose fp32 arithmetic is itself noisy (deep
    stacks of large activations); judged against float64, each runtime's rounding is measured for what it is.
    """
    import onnxruntime as ort
    import torch

    with torch.no_grad():
        single = model(*inputs).numpy()
        reference = copy.deepcopy(model).double()(*(tensor.double() for tensor in inputs)).numpy()
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    feed = {arg.name: tensor.numpy() for arg, tensor in zip(session.get_inputs(), inputs)}
    actual = session.run(None, feed)[0]
    torch_error = float(np.max(np.abs(single - reference)))
    limit = parity_limit(torch_error, tolerance)
    if actual.shape != reference.shape:
        return Parity(math.inf, torch_error, limit)
    return Parity(float(np.max(np.abs(actual - reference))), torch_error, limit)
