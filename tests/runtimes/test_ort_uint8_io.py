"""The uint8 wrapper graph for ONNX Runtime: the host's float work inside the graph, bit for bit."""

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from lipsync_render.contract import UNET, UNET_UINT8
from lipsync_render.errors import PackageError
from lipsync_render.model_input import prediction_to_uint8, visual_input
from lipsync_render.options import SessionOptions
from lipsync_render.package import load_package
from lipsync_render.runtimes import get_backend
from lipsync_render.runtimes.ort.runner import OrtModel
from lipsync_render.runtimes.ort.sessions import make_session
from lipsync_render.runtimes.ort.uint8_io import uint8_unet, wrap
from lipsync_render.synth.avatar import synth_package


@pytest.fixture(scope="module")
def random_package(tmp_path_factory):
    return load_package(synth_package(tmp_path_factory.mktemp("uint8") / "random", frames=3, weights="random"))


def inputs(n, seed=0):
    rng = np.random.default_rng(seed)
    crops = rng.integers(0, 256, (n, 328, 328, 3), dtype=np.uint8)
    return crops, rng.uniform(0, 2, (n, 32, 16, 16)).astype(np.float32)


def test_predictions_are_bit_identical_to_the_host_path(random_package):
    crops, audio = inputs(3)
    options = SessionOptions(device="cpu", precision="fp32", batch_size=2)
    reference = get_backend("onnxruntime").load(random_package, UNET, options)
    expected = prediction_to_uint8(reference.run(np.stack([visual_input(c) for c in crops]), audio))
    model = get_backend("onnxruntime").load(random_package, UNET_UINT8, options)
    assert model.run(crops, audio).tobytes() == expected.tobytes()


def test_the_wrapper_is_a_valid_cached_model(random_package):
    path = uint8_unet(random_package, random_package.unet_path)
    assert path.parent == random_package.root / "cache" and uint8_unet(random_package, random_package.unet_path) == path
    onnx.checker.check_model(onnx.load(str(path)))


def test_padded_constant_batches_drop_the_padding(random_package):
    crops, audio = inputs(3, seed=1)
    session = make_session(uint8_unet(random_package, random_package.unet_path), "cpu", 1)
    padded = OrtModel(session, UNET_UINT8, 2, bind_buffers=True).run(crops, audio)  # IOBinding, 2 + 1 padded
    plain = OrtModel(session, UNET_UINT8, 4, bind_buffers=False).run(crops, audio)
    assert padded.shape == (3, 320, 320, 3) and np.array_equal(padded, plain)


def test_a_model_that_gives_nan_is_caught_without_float_output(tiny_package, tmp_path):
    model = onnx.load(str(load_package(tiny_package).unet_path))
    for i, tensor in enumerate(model.graph.initializer):
        if tensor.name == "tiny.unet.visual.bias":
            model.graph.initializer[i].CopyFrom(
                numpy_helper.from_array(np.full((1, 3, 1, 1), np.nan, np.float32), tensor.name)
            )
    onnx.save(wrap(model), str(tmp_path / "nan.onnx"))
    broken = OrtModel(make_session(tmp_path / "nan.onnx", "cpu", 1), UNET_UINT8, 2)
    with pytest.raises(PackageError, match="NaN"):
        broken.run(*inputs(2))
