"""On a machine with a working CUDA provider: warm-up, fp16 against fp32, CUDA graphs, TensorRT against CUDA.

Skipped where ONNX Runtime cannot really run a session on CUDA (checked by creating one, not by asking).
"""

import numpy as np
import pytest

from lipsync_render.contract import AUDIO_BLOCK_SHAPE, UNET, VISUAL_INPUT_SHAPE
from lipsync_render.errors import DeviceError
from lipsync_render.options import SessionOptions
from lipsync_render.package import load_package
from lipsync_render.planning.quality import psnr
from lipsync_render.runtimes import get_backend
from lipsync_render.runtimes.ort.sessions import CUDA, available_providers


def cuda_runs() -> bool:
    if CUDA not in available_providers():
        return False
    from lipsync_render.diagnostics.doctor.providers import session_providers

    return session_providers([CUDA])[0][:1] == [CUDA]


pytestmark = pytest.mark.skipif(not cuda_runs(), reason="no working CUDA provider here")


@pytest.fixture(scope="module")
def random_package(tmp_path_factory):
    from lipsync_render.synth.avatar import synth_package

    return load_package(synth_package(tmp_path_factory.mktemp("gpu") / "random", frames=4, weights="random"))


@pytest.fixture(scope="module")
def inputs():
    rng = np.random.default_rng(0)
    return (
        rng.random((8, *VISUAL_INPUT_SHAPE), dtype=np.float32),
        rng.random((8, *AUDIO_BLOCK_SHAPE), dtype=np.float32),
    )


def unet(package, **options):
    model = get_backend("onnxruntime").load(package, UNET, SessionOptions(batch_size=8, **options))
    model.warm_up()
    return model


def test_warm_up_and_fp16_against_fp32(random_package, inputs):
    fp32 = unet(random_package, device="cuda")
    fp16 = unet(random_package, device="cuda", precision="fp16")
    assert fp32.device == "cuda" and fp32.io_on_device
    assert psnr(fp32.run(*inputs), fp16.run(*inputs)) > 40


def test_cuda_graph_run_equals_a_plain_run(random_package, inputs):
    plain = unet(random_package, device="cuda").run(*inputs)
    graphed = unet(random_package, device="cuda", cuda_graph=True)
    np.testing.assert_allclose(graphed.run(*inputs), plain, atol=1e-5)
    np.testing.assert_allclose(graphed.run(*inputs), plain, atol=1e-5)  # the replay, not only the capture


def test_tensorrt_fp32_equals_cuda_fp32(random_package, inputs):
    try:
        tensorrt = unet(random_package, device="tensorrt")
    except DeviceError as exc:
        pytest.skip(f"TensorRT is not usable here: {exc}")
    np.testing.assert_allclose(tensorrt.run(*inputs), unet(random_package, device="cuda").run(*inputs), atol=2e-3)
