"""--unet-io uint8 (crops in, uint8 predictions out, the float work inside the model) renders the same frames."""

import cv2
import numpy as np
import pytest

from lipsync_render.contract import UNET, UNET_UINT8
from lipsync_render.errors import DeviceError
from lipsync_render.options import RenderOptions, SessionOptions
from lipsync_render.rendering.renderer import Renderer


def render_frames(package, wav, out, **session):
    out.mkdir()
    options = SessionOptions(device="cpu", precision="fp32", batch_size=4, workers=1, **session)
    with Renderer(package, options) as renderer:
        renderer.render(wav, out / "out.mp4", RenderOptions(frames_dir=out / "frames", frames_format="png"))
        contract = renderer.unet.contract
    return contract, [cv2.imread(str(path)) for path in sorted((out / "frames").glob("*.png"))]


@pytest.mark.parametrize("backend", ["onnxruntime", "torch"])
def test_uint8_io_gives_bit_identical_frames(backend, tiny_package, short_wav, tmp_path):
    if backend == "torch":
        pytest.importorskip("torch")
    float_contract, expected = render_frames(tiny_package, short_wav, tmp_path / "f", backend=backend, unet_io="float")
    uint8_contract, frames = render_frames(tiny_package, short_wav, tmp_path / "u", backend=backend, unet_io="uint8")
    assert (float_contract, uint8_contract) == (UNET, UNET_UINT8)
    assert len(frames) == len(expected) == 33
    for number, (frame, reference) in enumerate(zip(frames, expected)):
        assert np.array_equal(frame, reference), f"frame {number} differs"


def test_auto_keeps_the_float_path_on_the_cpu(tiny_package):
    with Renderer(tiny_package, SessionOptions(device="cpu", precision="fp32")) as renderer:
        assert renderer.unet.contract is UNET


def test_a_backend_without_uint8_io_refuses_it(tiny_package):
    pytest.importorskip("openvino")
    with pytest.raises(DeviceError, match="cannot take uint8 crops"):
        Renderer(tiny_package, SessionOptions(backend="openvino", device="cpu", precision="fp32", unet_io="uint8"))
