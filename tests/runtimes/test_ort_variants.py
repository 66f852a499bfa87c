"""Reduced-precision UNet variants: int8 calibration and cache, fp16 only on a GPU, engine cache keys."""

import shutil

import numpy as np
import onnx
import pytest

from lipsync_render.devices import cuda_driver_present
from lipsync_render.errors import DeviceError, LipsyncError
from lipsync_render.options import SessionOptions
from lipsync_render.package import load_package, sha256_file
from lipsync_render.planning.quality import precision_psnr, psnr
from lipsync_render.rendering.renderer import Renderer
from lipsync_render.runtimes.calibration import babble
from lipsync_render.runtimes.ort.sessions import make_session
from lipsync_render.runtimes.ort.variants import engine_cache_dir, unet_for_precision


@pytest.fixture
def package(tiny_package, tmp_path):
    return load_package(shutil.copytree(tiny_package, tmp_path / "pkg"))


def test_int8_is_quantised_cached_and_close(package):
    path = unet_for_precision(package, "int8")
    assert path.parent == package.root / "cache" and "int8" in path.name
    model = onnx.load(str(path))
    assert any(node.op_type == "QuantizeLinear" for node in model.graph.node)
    stamp = path.stat().st_mtime_ns
    assert unet_for_precision(package, "int8") == path and path.stat().st_mtime_ns == stamp
    assert precision_psnr(package, "int8", frames=4) > 30
    session = make_session(path, "cpu", 1)
    assert [i.name for i in session.get_inputs()] == package.unet_io.inputs


def test_fp32_is_the_package_model(package):
    assert unet_for_precision(package, "fp32") == package.unet_path


def test_unknown_precision(package):
    with pytest.raises(LipsyncError, match="Unknown precision 'int4'"):
        unet_for_precision(package, "int4")


@pytest.mark.skipif(cuda_driver_present(), reason="fp16 is allowed where CUDA works")
def test_fp16_refused_on_cpu(package, tmp_path):
    pytest.importorskip("onnxconverter_common")
    with pytest.raises(DeviceError, match="fp16 needs a CUDA or TensorRT device"):
        Renderer(package, SessionOptions(precision="fp16", device="cpu", workers=0))


def test_engine_cache_only_for_tensorrt(package):
    assert engine_cache_dir(package, package.unet_path, "cpu") is None
    path = engine_cache_dir(package, package.unet_path, "tensorrt")
    assert path.is_dir() and path.parent.name == "tensorrt"
    assert path.name.startswith(sha256_file(package.unet_path)[:16] + "-")


def test_psnr_and_babble():
    a = np.zeros((4, 4))
    assert psnr(a, a) == float("inf")
    assert abs(psnr(a, a + 0.1) - 20.0) < 1e-9
    signal = babble(2.0)
    assert signal.dtype == np.float32 and len(signal) == 32000 and 0.05 < np.abs(signal).max() < 1.0


def test_fp16_keeps_float32_inputs_and_outputs(package):
    pytest.importorskip("onnxconverter_common")
    path = unet_for_precision(package, "fp16")
    model = onnx.load(str(path))
    assert {i.type.tensor_type.elem_type for i in model.graph.input} == {onnx.TensorProto.FLOAT}
    assert {o.type.tensor_type.elem_type for o in model.graph.output} == {onnx.TensorProto.FLOAT}
    assert any(init.data_type == onnx.TensorProto.FLOAT16 for init in model.graph.initializer)
