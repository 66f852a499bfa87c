"""Provider selection (testable on CPU by its logic) and batched UNet runs."""

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from lipsync_render.contract import UNET
from lipsync_render.devices import DeviceRequest, cuda_driver_present
from lipsync_render.errors import DeviceError
from lipsync_render.package import load_package
from lipsync_render.runtimes.ort.runner import OrtModel
from lipsync_render.runtimes.ort.sessions import CPU, CUDA, TENSORRT, check_providers, make_session, provider_plan

ALL = [TENSORRT, CUDA, CPU]


def test_auto_uses_cuda_only_with_provider_and_driver():
    auto = DeviceRequest("auto")
    assert provider_plan(auto, ALL, driver=True) == [(CUDA, {"device_id": 0}), CPU]
    assert provider_plan(auto, ALL, driver=False) == [CPU]
    assert provider_plan(auto, [CPU], driver=True) == [CPU]


def test_cuda_graph_is_a_cuda_provider_option():
    plan = provider_plan(DeviceRequest("cuda"), ALL, driver=True, cuda_graph=True)
    assert plan[0] == (CUDA, {"device_id": 0, "enable_cuda_graph": "1"})
    assert provider_plan(DeviceRequest("cpu"), ALL, driver=True, cuda_graph=True) == [CPU]


def test_explicit_cuda_without_provider_or_driver_is_an_error():
    with pytest.raises(DeviceError, match="no CUDA provider"):
        provider_plan(DeviceRequest("cuda"), [CPU], driver=True)
    with pytest.raises(DeviceError, match="no NVIDIA driver"):
        provider_plan(DeviceRequest("cuda", 1), ALL, driver=False)
    assert provider_plan(DeviceRequest("cuda", 1), ALL, driver=True)[0] == (CUDA, {"device_id": 1})


def test_tensorrt_plan_caches_engines(tmp_path):
    plan = provider_plan(DeviceRequest("tensorrt"), ALL, driver=True, cache_dir=tmp_path)
    name, options = plan[0]
    assert name == TENSORRT and options["trt_engine_cache_enable"] and options["trt_engine_cache_path"] == str(tmp_path)
    assert [p if isinstance(p, str) else p[0] for p in plan] == [TENSORRT, CUDA, CPU]
    with pytest.raises(DeviceError, match="TensorRT was requested"):
        provider_plan(DeviceRequest("tensorrt"), [CUDA, CPU], driver=True)


def test_silent_fallback_is_caught(tmp_path):
    """ONNX Runtime quietly runs on the CPU when CUDA fails to load; an explicit request must fail loudly."""
    plan = [(CUDA, {"device_id": 0}), CPU]
    with pytest.raises(DeviceError, match="fell back to CPUExecutionProvider"):
        check_providers(DeviceRequest("cuda"), plan, [CPU], tmp_path / "unet.onnx")
    check_providers(DeviceRequest("cuda"), plan, [CUDA, CPU], tmp_path / "unet.onnx")
    check_providers(DeviceRequest("auto"), plan, [CPU], tmp_path / "unet.onnx")


@pytest.mark.skipif(cuda_driver_present(), reason="this machine has an NVIDIA driver")
def test_explicit_cuda_fails_cleanly_on_this_machine(tiny_package):
    with pytest.raises(DeviceError):
        make_session(load_package(tiny_package).unet_path, "cuda")


def test_auto_session_reports_real_providers(tiny_package):
    session = make_session(load_package(tiny_package).unet_path, "auto", threads=1)
    expected = CUDA if cuda_driver_present() else CPU
    assert session.get_providers()[0] in (expected, CPU)


@pytest.mark.parametrize("bind_buffers", [False, True])
def test_runner_batches_and_pads_only_for_constant_shapes(tiny_package, bind_buffers):
    """The CPU runs short batches at their size; the GPU path (IOBinding, constant shape) pads and drops."""
    session = make_session(load_package(tiny_package).unet_path, "cpu", threads=1)
    assert OrtModel(session, UNET, batch_size=4).constant_shape is False  # the default on the CPU
    runner = OrtModel(session, UNET, batch_size=4, bind_buffers=bind_buffers)  # True: the GPU code path, on CPU
    assert runner.constant_shape is bind_buffers and runner.io_on_device is bind_buffers
    rng = np.random.default_rng(0)
    visual = rng.random((7, 6, 320, 320), dtype=np.float32)
    audio = rng.random((7, 32, 16, 16), dtype=np.float32)
    batched = runner.run(visual, audio)
    single = np.concatenate(
        [session.run(None, {"input": visual[i : i + 1], "audio": audio[i : i + 1]})[0] for i in range(7)]
    )
    assert batched.shape == (7, 3, 320, 320)
    assert np.allclose(batched, single, atol=1e-6)


def test_runner_loops_over_a_static_batch_one_model(tmp_path):
    visual = helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 6, 320, 320])
    audio = helper.make_tensor_value_info("audio", TensorProto.FLOAT, [1, 32, 16, 16])
    output = helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 3, 320, 320])
    starts, ends, axes = (
        helper.make_tensor(n, TensorProto.INT64, [1], [v]) for n, v in (("starts", 0), ("ends", 3), ("axes", 1))
    )
    nodes = [
        helper.make_node("Slice", ["input", "starts", "ends", "axes"], ["sliced"]),
        helper.make_node("Sigmoid", ["sliced"], ["output"]),
    ]
    graph = helper.make_graph(nodes, "static", [visual, audio], [output], [starts, ends, axes])
    path = tmp_path / "static.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), path)
    runner = OrtModel(ort.InferenceSession(str(path), providers=[CPU]), UNET, batch_size=25)
    assert runner.batch_size == 1 and runner.constant_shape
    x = np.random.default_rng(1).random((5, 6, 320, 320), dtype=np.float32)
    out = runner.run(x, np.zeros((5, 32, 16, 16), np.float32))
    assert np.allclose(out, 1 / (1 + np.exp(-x[:, :3])), atol=1e-6)
