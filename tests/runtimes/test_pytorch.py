"""The torch backend on the CPU: ONNX weights in the torch networks, parity with ONNX Runtime, refusals."""

import importlib.util
from dataclasses import replace

import numpy as np
import pytest

from lipsync_render.contract import AUDIO_ENCODER, UNET, UNET_UINT8
from lipsync_render.errors import DeviceError, PackageError
from lipsync_render.options import SessionOptions
from lipsync_render.package import load_package
from lipsync_render.runtimes import get_backend
from lipsync_render.synth.avatar import synth_package

# Found at collection, imported only when a test runs: importing torch loads its CUDA libraries into the test
# process, which would change what tests collected before these see (the doctor's library checks).
pytestmark = pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="PyTorch is not installed")


@pytest.fixture(scope="module")
def torch():
    import torch

    return torch


PARITY = 1e-4


@pytest.fixture(scope="module")
def random_package(tmp_path_factory):
    """Full-size architectures with random weights: every conv matters."""
    return load_package(synth_package(tmp_path_factory.mktemp("torch") / "random", frames=3, weights="random"))


def load(package, contract=UNET, backend="torch", **options):
    return get_backend(backend).load(package, contract, SessionOptions(device="cpu", precision="fp32", **options))


def unet_feeds(n=3, seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((n, 6, 320, 320), dtype=np.float32), rng.uniform(0, 2, (n, 32, 16, 16)).astype(np.float32)


def test_unet_matches_onnx_runtime_on_random_weights(random_package):
    feeds = unet_feeds()
    torch_output = load(random_package, batch_size=2).run(*feeds)
    ort_output = load(random_package, backend="onnxruntime", batch_size=2).run(*feeds)
    assert torch_output.shape == (3, 3, 320, 320) and torch_output.dtype == np.float32
    assert np.abs(torch_output - ort_output).max() <= PARITY
    assert torch_output.std() > 0.01  # the random weights give a real picture, not a constant


def test_audio_encoder_matches_onnx_runtime_on_random_weights(random_package):
    windows = np.random.default_rng(1).uniform(-4, 4, (70, 1, 80, 16)).astype(np.float32)
    torch_output = load(random_package, AUDIO_ENCODER).run(windows)
    ort_output = load(random_package, AUDIO_ENCODER, backend="onnxruntime").run(windows)
    assert torch_output.shape == (70, 512)
    assert np.abs(torch_output - ort_output).max() <= PARITY


def test_tiny_stand_ins_match_onnx_runtime(tiny_package):
    package = load_package(tiny_package)
    feeds = unet_feeds(2)
    np.testing.assert_allclose(load(package).run(*feeds), load(package, backend="onnxruntime").run(*feeds), atol=PARITY)
    windows = np.random.default_rng(2).uniform(-4, 4, (5, 1, 80, 16)).astype(np.float32)
    np.testing.assert_allclose(
        load(package, AUDIO_ENCODER).run(windows),
        load(package, AUDIO_ENCODER, backend="onnxruntime").run(windows),
        atol=PARITY,
    )


def test_uint8_unet_equals_the_float_unet_and_host_geometry(random_package):
    from lipsync_render.model_input import prediction_to_uint8, visual_input

    crops = np.random.default_rng(3).integers(0, 256, (3, 328, 328, 3), dtype=np.uint8)
    _, audio = unet_feeds()
    visual = np.stack([visual_input(crop) for crop in crops])
    expected = prediction_to_uint8(load(random_package, batch_size=3).run(visual, audio))
    predictions = load(random_package, UNET_UINT8, batch_size=2).run(crops, audio)
    assert predictions.dtype == np.uint8 and predictions.shape == (3, 320, 320, 3)
    np.testing.assert_array_equal(predictions, expected)


def test_a_real_torch_export_maps_onto_the_networks(tmp_path, torch):
    """A UNet exported by torch.onnx (its own node names and order) loads back into the same weights."""
    from lipsync_render.package.export import _export
    from lipsync_render.runtimes.pytorch.onnx_weights import network_from_onnx
    from lipsync_render.torch_networks import unet_model

    torch.manual_seed(0)
    model = unet_model().eval()
    for module in model.modules():  # non-trivial BatchNorm statistics, so folding matters
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.1, 0.1)
            module.running_var.uniform_(0.5, 1.5)
    visual, audio = (torch.from_numpy(x) for x in unet_feeds(1))
    _export(model, (visual, audio), tmp_path / "unet.onnx", ["input", "audio"], ["output"], "batch", None)
    network = network_from_onnx(tmp_path / "unet.onnx", UNET)
    with torch.no_grad():
        assert (network(visual, audio) - model(visual, audio)).abs().max().item() <= PARITY


def test_a_graph_of_another_architecture_is_refused(tmp_path, random_package):
    import onnx

    from lipsync_render.runtimes.pytorch.onnx_weights import network_from_onnx

    model = onnx.load(str(random_package.unet_path))
    conv = next(node for node in model.graph.node if node.name == "unet.down3.conv1.depthwise")
    next(a for a in conv.attribute if a.name == "strides").ints[:] = [1, 1]
    onnx.save(model, str(tmp_path / "other.onnx"))
    with pytest.raises(PackageError, match="SyncTalk_2D architecture"):
        network_from_onnx(tmp_path / "other.onnx", UNET)


def test_precisions_the_cpu_cannot_run_are_refused(tiny_package):
    package = load_package(tiny_package)
    for precision in ("fp16", "bf16", "int8"):
        with pytest.raises(DeviceError, match="torch backend runs fp32 on the CPU"):
            get_backend("torch").load(package, UNET, SessionOptions(device="cpu", precision=precision))


def test_cuda_without_a_gpu_is_one_sentence(torch):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(DeviceError, match="CUDA was requested"):
        get_backend("torch").planned_device("cuda")
    with pytest.raises(DeviceError, match="TensorRT"):
        get_backend("torch").planned_device("tensorrt")


def test_static_padded_buffers_drop_the_padding(tiny_package):
    """The constant-shape path CUDA takes (static buffers, short batches padded), here on the CPU."""
    from lipsync_render.runtimes.pytorch.model import TorchModel

    plain = load(load_package(tiny_package), UNET_UINT8, batch_size=4)
    static = TorchModel(plain.module, UNET_UINT8, 2, plain.torch_device, "fp32", static_buffers=True)
    crops = np.random.default_rng(4).integers(0, 256, (3, 328, 328, 3), dtype=np.uint8)
    _, audio = unet_feeds()
    assert static.constant_shape and np.array_equal(static.run(crops, audio), plain.run(crops, audio))


def test_a_synctalk2d_checkpoint_loads_folded(tmp_path, torch):
    """A .pth state_dict (DataParallel's 'module.' prefix included) gives the same network, BatchNorm folded."""
    from lipsync_render.runtimes.pytorch.networks import from_checkpoint
    from lipsync_render.torch_networks import audio_encoder_model

    torch.manual_seed(1)
    model = audio_encoder_model().eval()
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_var.uniform_(0.5, 1.5)
    state = {f"module.{key.removeprefix('audio_encoder.')}": value for key, value in model.state_dict().items()}
    torch.save(state, tmp_path / "audio_visual_encoder.pth")
    folded = from_checkpoint(tmp_path / "audio_visual_encoder.pth", encoder=True)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    mel = torch.rand(5, 1, 80, 16) * 8 - 4
    with torch.no_grad():
        assert (folded(mel) - model(mel)).abs().max().item() <= PARITY


@pytest.mark.parametrize("precision", ["fp32", "fp16", "bf16"])
def test_cuda_uint8_unet_with_a_graph_matches_eager_and_the_cpu(random_package, precision, torch):
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU for torch here")
    crops = np.random.default_rng(5).integers(0, 256, (3, 328, 328, 3), dtype=np.uint8)
    _, audio = unet_feeds()
    options = SessionOptions(device="cuda", precision=precision, batch_size=2)
    backend = get_backend("torch")
    eager = backend.load(random_package, UNET_UINT8, options)
    graphed = backend.load(random_package, UNET_UINT8, replace(options, cuda_graph=True))
    graphed.warm_up()
    assert graphed.constant_shape and graphed.device == "cuda" and "CUDA graph" in graphed.providers[0]
    expected = eager.run(crops, audio)
    assert np.array_equal(graphed.run(crops, audio), expected)  # padded last batch, replayed graph
    cpu = load(random_package, UNET_UINT8, batch_size=3).run(crops, audio)
    levels = np.abs(expected.astype(np.int16) - cpu)
    if precision == "fp32":
        assert levels.max() <= 1  # TF32 is off: only the kernels' summation order differs
    else:
        assert levels.mean() <= 3  # reduced precision: close on average, no bound on the worst pixel
