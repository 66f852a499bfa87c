"""Export parity: ONNX Runtime is judged against float64, with PyTorch fp32's own noise as the yardstick."""

import math

import numpy as np
import pytest

from lipsync_render.package.parity import PARITY_FLOOR, PARITY_NOISE_FACTOR, UNCHECKED, Parity, parity, parity_limit


def test_the_limit_follows_fp32_noise_with_a_floor_and_an_override():
    assert parity_limit(1e-7) == PARITY_FLOOR
    assert parity_limit(1.3e-3) == pytest.approx(PARITY_NOISE_FACTOR * 1.3e-3)  # the case a fixed 1e-4 refused
    assert parity_limit(1.3e-3, tolerance=1e-2) == 1e-2


def test_a_nan_output_never_passes():
    assert not Parity(math.nan, 0.0, 1e-4).ok
    assert not UNCHECKED.checked and UNCHECKED.describe() == "not checked"


def test_a_model_noisy_in_fp32_passes_when_onnx_runtime_is_as_close_to_float64(tmp_path):
    torch = pytest.importorskip("torch")

    class Cancelling(torch.nn.Module):
        """Large terms that cancel: fp32 loses digits that float64 keeps."""

        def forward(self, x):
            scaled = x * 1e4
            return (scaled * scaled + x) / 1e4 - scaled * scaled / 1e4  # x / 1e4 in exact arithmetic

    model, path = Cancelling().eval(), tmp_path / "noisy.onnx"
    inputs = (torch.rand(4, 256, generator=torch.Generator().manual_seed(0)) + 0.5,)
    torch.onnx.export(model, inputs, str(path), input_names=["x"], output_names=["y"], dynamo=False)
    result = parity(model, path, inputs)
    assert result.torch_error > PARITY_FLOOR  # a fixed 1e-4 against PyTorch fp32 would judge noise
    assert result.ok and result.limit == pytest.approx(PARITY_NOISE_FACTOR * result.torch_error)
    assert np.isfinite(result.onnx_error)
