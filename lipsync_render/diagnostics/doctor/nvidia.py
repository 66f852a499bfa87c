"""The doctor's NVIDIA section: the driver, and the CUDA and cuDNN libraries the installed onnxruntime-gpu build
loads, found by their names the way a render finds them."""

from __future__ import annotations

import ctypes

from lipsync_render.devices import cuda_driver_present, gpu_name
from lipsync_render.diagnostics.doctor.check import Check
from lipsync_render.runtimes.ort.sessions import preload_gpu_libraries

TENSORRT_LIBRARIES = ("libnvinfer.so.10", "libnvinfer.so.8")
CUDNN_MAJOR = 9  # every onnxruntime-gpu from 1.19 on is built against cuDNN 9
MINIMUM_DRIVER = {12: "525", 13: "580"}  # the NVIDIA driver branch each CUDA major version needs


def built_cuda_version() -> str | None:
    """The CUDA version the installed onnxruntime-gpu was built for ('13.0'), None for a CPU-only build."""
    try:
        from onnxruntime.capi import build_and_package_info
    except ImportError:
        return None
    return getattr(build_and_package_info, "cuda_version", None) or None


def cuda_libraries(cuda_version: str) -> dict[str, str]:
    """The sonames the CUDA provider of a build for ``cuda_version`` loads."""
    major = cuda_version.split(".")[0]
    return {"cudart": f"libcudart.so.{major}", "cublas": f"libcublas.so.{major}", "cudnn": f"libcudnn.so.{CUDNN_MAJOR}"}


def gpu_libraries_fix(cuda_version: str | None) -> str:
    """How to get the libraries the installed build needs."""
    if cuda_version is None:
        return "pip install onnxruntime-gpu (this ONNX Runtime build has no CUDA provider)"
    major = int(cuda_version.split(".")[0])
    driver = MINIMUM_DRIVER.get(major, "a recent")
    return (
        f"pip install 'onnxruntime-gpu[cuda,cudnn]' (CUDA {major}.x and cuDNN {CUDNN_MAJOR} wheels from PyPI, "
        f"found through onnxruntime.preload_dlls), or install CUDA {major}.x and cuDNN {CUDNN_MAJOR} system-wide "
        f"on LD_LIBRARY_PATH; the NVIDIA driver must be r{driver} or newer"
    )


def first_loadable(names: tuple[str, ...]) -> str | None:
    """The first library that loads by its name alone, after the same preloading a render does: what ONNX
    Runtime will find, never a file loaded by its path that it would not."""
    if cuda_driver_present():  # a render preloads only where a GPU session is planned
        preload_gpu_libraries()
    for name in names:
        try:
            ctypes.CDLL(name)
            return name
        except OSError:
            continue
    return None


def check_driver(driver: bool) -> Check:
    if driver:
        return Check("nvidia driver", "ok", f"libcuda loads ({gpu_name() or 'GPU name unknown'})")
    return Check(
        "nvidia driver",
        "warn",
        "no NVIDIA driver (libcuda) found: a CPU machine",
        "nothing to do on a CPU machine; on a GPU machine install the NVIDIA driver",
    )


def check_cuda_libraries(driver: bool) -> Check:
    version = built_cuda_version()
    if version is None:
        return Check("cuda libraries", "warn", "this ONNX Runtime build has no CUDA provider", gpu_libraries_fix(None))
    wanted = cuda_libraries(version)
    loaded = {role: first_loadable((name,)) for role, name in wanted.items()}
    missing = [wanted[role] for role, name in loaded.items() if name is None]
    if not missing:
        return Check("cuda libraries", "ok", f"{', '.join(loaded.values())} (onnxruntime-gpu built for CUDA {version})")
    detail = f"not found: {', '.join(missing)} (onnxruntime-gpu is built for CUDA {version})"
    if not driver:
        return Check(
            "cuda libraries",
            "warn",
            detail + " (not needed without a GPU)",
            "nothing to do on a CPU machine; on a GPU machine " + gpu_libraries_fix(built_cuda_version()),
        )
    return Check(
        "cuda libraries", "fail", detail + ": ONNX Runtime cannot use the GPU", gpu_libraries_fix(built_cuda_version())
    )
