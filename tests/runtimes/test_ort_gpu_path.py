"""The ONNX Runtime GPU path, checked on the CPU by its logic: libraries preloaded, provider options per request,
settings from the device really used, engine-cache keys, warm-up failures, NVENC probing and fallback."""

import io
from contextlib import redirect_stdout
from dataclasses import replace

import av
import numpy as np
import onnxruntime as ort
import pytest

from lipsync_render.contract import UNET
from lipsync_render.devices import DeviceRequest
from lipsync_render.diagnostics.doctor import nvidia, providers
from lipsync_render.errors import DeviceError
from lipsync_render.media.video import VideoTarget, encoder_opens
from lipsync_render.options import SessionOptions
from lipsync_render.package import load_package
from lipsync_render.rendering import encoding_process
from lipsync_render.rendering.renderer import Renderer
from lipsync_render.runtimes.ort import BACKEND, audio_encoder_device, sessions
from lipsync_render.runtimes.ort.runner import OrtModel, warm_up_failure
from lipsync_render.runtimes.ort.sessions import CPU, CUDA, TENSORRT, make_session, provider_plan
from lipsync_render.runtimes.ort.variants import engine_key, gpu_identity

ALL = [TENSORRT, CUDA, CPU]


# 1. CUDA libraries --------------------------------------------------------------------------------------------


def test_gpu_libraries_are_preloaded_before_a_gpu_session_and_stdout_stays_clean(tiny_package, monkeypatch):
    calls = []

    def preload(**kwargs):
        calls.append("preload")
        print("Failed to load libcublas.so.13")  # what onnxruntime prints without the libraries

    monkeypatch.setattr(ort, "preload_dlls", preload)
    monkeypatch.setattr(sessions, "available_providers", lambda: [CUDA, CPU])
    monkeypatch.setattr(sessions, "cuda_driver_present", lambda: True)
    sessions.preload_gpu_libraries.cache_clear()
    stdout = io.StringIO()
    with redirect_stdout(stdout):
        session = make_session(load_package(tiny_package).unet_path, "auto", threads=1)
    sessions.preload_gpu_libraries.cache_clear()
    assert calls == ["preload"] and stdout.getvalue() == ""
    assert session.get_providers()[0] == CPU  # no GPU here: the fallback is reported, not hidden


def test_no_preload_for_a_cpu_session(tiny_package, monkeypatch):
    monkeypatch.setattr(ort, "preload_dlls", lambda **kwargs: pytest.fail("preloaded for a CPU session"))
    sessions.preload_gpu_libraries.cache_clear()
    make_session(load_package(tiny_package).unet_path, "cpu", threads=1)


@pytest.mark.parametrize("version, major, driver", [("13.0", "13", "r580"), ("12.4", "12", "r525")])
def test_doctor_checks_the_libraries_of_the_installed_build(version, major, driver):
    assert nvidia.cuda_libraries(version) == {
        "cudart": f"libcudart.so.{major}",
        "cublas": f"libcublas.so.{major}",
        "cudnn": "libcudnn.so.9",
    }
    fix = nvidia.gpu_libraries_fix(version)
    assert f"CUDA {major}.x" in fix and driver in fix


def test_doctor_names_the_build_version_in_what_is_missing(monkeypatch):
    monkeypatch.setattr(nvidia, "built_cuda_version", lambda: "13.0")
    monkeypatch.setattr(nvidia, "first_loadable", lambda names: None)
    check = nvidia.check_cuda_libraries(driver=True)
    assert check.status == "fail" and "libcublas.so.13" in check.detail and "CUDA 13.0" in check.detail


def test_doctor_test_model_needs_a_convolution():
    import onnx

    assert [node.op_type for node in onnx.load_from_string(providers.tiny_model()).graph.node] == ["Conv"]
    assert providers.session_providers([CPU]) == ([CPU], None)


# 2 and 5. TensorRT precision; the audio encoder on CUDA -----------------------------------------------------


@pytest.mark.parametrize("fp16", [False, True])
def test_tensorrt_builds_fp16_engines_only_when_asked(fp16):
    plan = provider_plan(DeviceRequest("tensorrt"), ALL, driver=True, fp16=fp16)
    assert plan[0][0] == TENSORRT and plan[0][1]["trt_fp16_enable"] is fp16


def test_the_audio_encoder_runs_on_cuda_under_tensorrt():
    assert audio_encoder_device("tensorrt:1") == "cuda:1"
    assert audio_encoder_device("tensorrt") == "cuda" and audio_encoder_device("cpu") == "cpu"


# 3. settings from the device really used ----------------------------------------------------------------------


def test_a_planned_gpu_that_ends_up_on_the_cpu_gets_cpu_settings(tiny_package, monkeypatch):
    monkeypatch.setattr(BACKEND, "planned_device", lambda device: "cuda")  # CUDA looks present, then falls back
    with Renderer(tiny_package, SessionOptions()) as renderer:
        assert renderer.unet.device == "cpu"
        assert (renderer.plan.batch_size, renderer.plan.workers) == (1, 0)
        assert renderer.unet.batch_size == 1 and renderer.pool.workers == 0


def test_explicit_values_survive_the_fallback(tiny_package, monkeypatch):
    monkeypatch.setattr(BACKEND, "planned_device", lambda device: "cuda")
    with Renderer(tiny_package, SessionOptions(batch_size=3, workers=0)) as renderer:
        assert (renderer.plan.batch_size, renderer.plan.workers) == (3, 0)


# 4. TensorRT and CUDA graphs ----------------------------------------------------------------------------------


def test_cuda_graphs_under_tensorrt_use_tensorrt_s_own_option():
    plan = provider_plan(DeviceRequest("tensorrt"), ALL, driver=True, cuda_graph=True)
    assert plan[0][1]["trt_cuda_graph_enable"] is True
    assert plan[1] == (CUDA, {"device_id": 0}), "the CUDA fallback must not capture TensorRT's nodes"


# 6. engine-cache key --------------------------------------------------------------------------------------------


def test_engine_key_holds_model_gpu_versions_and_precision():
    key = engine_key("ab" * 32, "GPU-1234-abcd", "10.7.0", "1.31.1", "fp16")
    assert key == "abababababababab-gpu_1234_abcd-trt10.7.0-ort1.31.1-fp16"
    assert key != engine_key("ab" * 32, "GPU-1234-abcd", "10.7.0", "1.31.1", "fp32")


def test_gpu_identity_follows_cuda_visible_devices():
    rows = ["0, GPU-aaaa", "1, GPU-bbbb", "2, GPU-cccc"]
    query = lambda fields: rows  # noqa: E731
    assert gpu_identity(0, visible="", query=query) == "GPU-aaaa"
    assert gpu_identity(0, visible="2,0", query=query) == "GPU-cccc"
    assert gpu_identity(1, visible="2,0", query=query) == "GPU-aaaa"
    assert gpu_identity(0, visible="GPU-bbbb", query=query) == "GPU-bbbb"
    assert gpu_identity(3, visible="2,0", query=query) == "unknown-gpu"


# 7. warm-up failures --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "message, hint",
    [
        ("CUDA failure 2: out of memory ; GPU=0", "smaller --batch-size"),
        ("Could not load library libcudnn_ops.so.9", "cuDNN"),
        ("CUDA graph capture failed", "without --cuda-graph"),
    ],
)
def test_warm_up_failures_are_one_sentence_with_the_fix(message, hint):
    sentence = warm_up_failure(RuntimeError(message + "\nstack trace line"), "UNet", "cuda", 25)
    assert hint in sentence and "\n" not in sentence and sentence.endswith(".")


def test_a_failing_warm_up_raises_device_error(tiny_package, monkeypatch):
    session = make_session(load_package(tiny_package).unet_path, "cpu", threads=1)
    model = OrtModel(session, UNET, 2, bind_buffers=True)

    def fail(binding):
        raise RuntimeError("CUDA failure 2: out of memory")

    monkeypatch.setattr(session, "run_with_iobinding", fail)
    with pytest.raises(DeviceError, match="ran out of memory at batch 2"):
        model.warm_up()


class _GpuThatFailsWarmUp:
    """A loaded UNet that claims a GPU and fails its first run, as a card without enough memory does."""

    def __init__(self, model):
        self.__dict__.update(model.__dict__)
        self.device = "cuda"
        self.run = model.run

    def warm_up(self):
        raise DeviceError("The UNet could not run on cuda (the GPU ran out of memory at batch 25).")


def test_auto_retries_on_the_cpu_after_a_gpu_warm_up_failure(tiny_package, monkeypatch, caplog):
    real_load = BACKEND.load
    loads = []

    def load(package, contract, options):
        loads.append(options.device)
        if contract.key == UNET.key and options.device != "cpu":  # "runs" on the GPU: the CPU model, failing warm-up
            return _GpuThatFailsWarmUp(real_load(package, contract, replace(options, device="cpu")))
        return real_load(package, contract, options)

    monkeypatch.setattr(BACKEND, "load", load)
    monkeypatch.setattr(BACKEND, "planned_device", lambda device: "cpu" if device == "cpu" else "cuda")
    with Renderer(tiny_package, SessionOptions()) as renderer:
        assert renderer.unet.device == "cpu" and renderer.plan.device == "cpu"
        assert renderer.plan.batch_size == 1
    assert "Rendering on the CPU with CPU settings instead." in caplog.text
    with pytest.raises(DeviceError, match="ran out of memory"):
        Renderer(tiny_package, SessionOptions(device="cuda"))  # asked for explicitly: an error, not a fallback


# 8. NVENC -------------------------------------------------------------------------------------------------------


def test_nvenc_that_fails_to_open_gives_way_to_libx264_with_a_warning(tmp_path):
    if encoder_opens("h264_nvenc"):
        pytest.skip("NVENC opens here")
    warnings = []
    target = VideoTarget(tmp_path / "a.mp4", 640, 360, encoder="h264_nvenc", fallback_encoder="libx264")
    writer = encoding_process._open_writer(target, warnings.append)
    writer.write_i420(np.zeros((540, 640), np.uint8))
    writer.close()
    assert writer.video.codec_context.name == "libx264" and "libx264 instead" in warnings[0]
    with pytest.raises(av.FFmpegError):
        encoding_process._open_writer(VideoTarget(tmp_path / "b.mp4", 640, 360, encoder="h264_nvenc"), warnings.append)


def test_the_encoder_probe_uses_the_real_size():
    assert encoder_opens("libx264", 1920, 1080) and encoder_opens("libx264", 320, 180)
