"""The doctor's ONNX Runtime section: which execution providers a session on a one-convolution model really runs
on (ONNX Runtime falls back to the CPU silently when a GPU library is missing)."""

from __future__ import annotations

from lipsync_render.diagnostics.doctor.check import Check
from lipsync_render.diagnostics.doctor.nvidia import (
    TENSORRT_LIBRARIES,
    built_cuda_version,
    first_loadable,
    gpu_libraries_fix,
)
from lipsync_render.runtimes.ort.sessions import CPU, CUDA, TENSORRT, available_providers, preload_gpu_libraries


def tiny_model() -> bytes:
    """A one-convolution ONNX model, serialized: a session on it shows which provider really runs, and a
    convolution needs cuDNN on CUDA, as the UNet does (an elementwise node would not)."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 8, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1, 8, 8])
    weight = numpy_helper.from_array(np.full((1, 1, 3, 3), 1 / 9, np.float32), "w")
    node = helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1])
    graph = helper.make_graph([node], "doctor", [x], [y], [weight])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8  # readable by every ONNX Runtime this project supports
    return model.SerializeToString()


def session_providers(providers: list) -> tuple[list[str], str | None]:
    """The providers a session on the tiny model really runs on, and the error if it could not be created."""
    import numpy as np
    import onnxruntime as ort

    if providers != [CPU]:
        preload_gpu_libraries()  # exactly what a render does before its first GPU session
    options = ort.SessionOptions()
    options.log_severity_level = 4  # a provider that fails to load is what we report, not ORT's log
    try:
        session = ort.InferenceSession(tiny_model(), sess_options=options, providers=providers)
        session.run(None, {"x": np.ones((1, 1, 8, 8), np.float32)})
    except Exception as exc:  # ORT raises its own types for unloadable providers
        return [], str(exc).splitlines()[0][:200]
    return session.get_providers(), None


def check_onnxruntime() -> Check:
    import onnxruntime as ort

    return Check("onnxruntime", "ok", f"{ort.__version__}, providers built in: {', '.join(available_providers())}")


def check_cpu_provider() -> Check:
    actual, error = session_providers([CPU])
    if actual[:1] == [CPU]:
        return Check("provider cpu", "ok", "a session runs on CPUExecutionProvider")
    return Check(
        "provider cpu",
        "fail",
        f"no session could be created ({error})",
        "reinstall ONNX Runtime: pip install --force-reinstall onnxruntime-gpu",
    )


def check_cuda_provider(driver: bool) -> Check:
    if CUDA not in available_providers():
        return Check(
            "provider cuda",
            "warn",
            "this ONNX Runtime build has no CUDA provider; rendering runs on the CPU",
            "pip install onnxruntime-gpu (instead of onnxruntime) on a machine with an NVIDIA GPU",
        )
    if not driver:
        return Check(
            "provider cuda",
            "warn",
            "no NVIDIA driver, so no CUDA; rendering runs on the CPU",
            "nothing to do on a CPU machine; on a GPU machine install the NVIDIA driver",
        )
    actual, error = session_providers([CUDA, CPU])
    if actual[:1] == [CUDA]:
        return Check("provider cuda", "ok", "a session really runs on CUDAExecutionProvider")
    why = f"session failed: {error}" if error else "ONNX Runtime fell back to the CPU"
    return Check("provider cuda", "fail", f"the GPU is not usable ({why})", gpu_libraries_fix(built_cuda_version()))


def check_tensorrt(driver: bool) -> Check:
    if TENSORRT not in available_providers() or not driver:
        return Check(
            "provider tensorrt",
            "warn",
            "not available here (needs an NVIDIA GPU and onnxruntime-gpu); --device tensorrt cannot be used",
            "optional: only for --device tensorrt",
        )
    loaded = first_loadable(TENSORRT_LIBRARIES)
    if loaded is None:
        return Check(
            "provider tensorrt",
            "warn",
            "TensorRT libraries (libnvinfer) not found; --device tensorrt cannot be used, cuda can",
            f"optional: pip install tensorrt-cu{(built_cuda_version() or '12').split('.')[0]} (the TensorRT this "
            "ONNX Runtime was built against)",
        )
    actual, error = session_providers([TENSORRT, CUDA, CPU])
    if actual[:1] == [TENSORRT]:
        return Check("provider tensorrt", "ok", f"a session really runs on TensorrtExecutionProvider ({loaded})")
    why = f"session failed: {error}" if error else f"ONNX Runtime fell back to {actual[0] if actual else 'nothing'}"
    return Check(
        "provider tensorrt",
        "warn",
        f"{loaded} loads but TensorRT is not usable ({why})",
        "install the TensorRT version this ONNX Runtime was built against (see its release notes)",
    )
