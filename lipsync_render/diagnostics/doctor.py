"""`lipsync doctor`: what is really usable on this machine, and how to fix what is not.

Every accelerator check runs the real thing (an ONNX Runtime session, an encoder that opens), because ONNX
Runtime and FFmpeg both fall back silently when a GPU library is missing.
"""

from __future__ import annotations

import ctypes
import shutil
from dataclasses import dataclass
from pathlib import Path

from lipsync_render.runtimes.devices import cuda_driver_present, gpu_name
from lipsync_render.runtimes.ort.sessions import CPU, CUDA, TENSORRT, available_providers

LOW_DISK_BYTES = 5 << 30
# Sonames ONNX Runtime's CUDA provider loads (CUDA 12 / cuDNN 9 builds first; older and newer ones next).
CUDA_LIBRARIES = {
    "cudart": ("libcudart.so.12", "libcudart.so.13", "libcudart.so.11.0", "libcudart.so", "cudart64_12.dll"),
    "cublas": ("libcublas.so.12", "libcublas.so.13", "libcublas.so.11", "libcublas.so", "cublas64_12.dll"),
    "cudnn": ("libcudnn.so.9", "libcudnn.so.8", "libcudnn.so", "cudnn64_9.dll"),
}
TENSORRT_LIBRARIES = ("libnvinfer.so.10", "libnvinfer.so.8", "libnvinfer.so", "nvinfer_10.dll")
GPU_LIBRARIES_FIX = (
    "pip install 'onnxruntime-gpu[cuda,cudnn]' (CUDA 12 and cuDNN 9 from PyPI), or install them "
    "system-wide and add their lib folder to LD_LIBRARY_PATH"
)


@dataclass
class Check:
    """One doctor finding: status is ok, warn or fail; fix says what to do when it is not ok."""

    name: str
    status: str
    detail: str
    fix: str | None = None

    def lines(self) -> list[str]:
        text = [f"{self.status:<5} {self.name:<18} {self.detail}"]
        if self.fix and self.status != "ok":
            text.append(f"{'':<5} {'':<18} fix: {self.fix}")
        return text


def run_checks(models: list[str] | None = None, package_dirs: list[Path] | None = None) -> list[Check]:
    """Every check, in the order printed. ``models`` limits the package checks to these names or paths."""
    driver = cuda_driver_present()
    checks = [
        check_onnxruntime(),
        check_cpu_provider(),
        check_driver(driver),
        check_cuda_libraries(driver),
        check_cuda_provider(driver),
        check_tensorrt(driver),
        check_pyav(),
        check_encoder("libx264", driver),
        check_encoder("h264_nvenc", driver),
    ]
    dirs = package_dirs if package_dirs is not None else package_search_dirs()
    checks += check_disk([Path.cwd(), *dirs])
    checks += check_packages(models if models else find_packages(dirs))
    return checks


def report(checks: list[Check]) -> str:
    """The printed form: one line per check, a fix line under each problem."""
    return "\n".join(line for check in checks for line in check.lines())


# ------------------------------------------------------------------------------------ ONNX Runtime


def tiny_model() -> bytes:
    """A one-node ONNX model (y = x + x), serialized: enough to see which provider a session really gets."""
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    graph = helper.make_graph([helper.make_node("Add", ["x", "x"], ["y"])], "doctor", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8  # readable by every ONNX Runtime this project supports
    return model.SerializeToString()


def session_providers(providers: list) -> tuple[list[str], str | None]:
    """The providers a session on the tiny model really runs on, and the error if it could not be created."""
    import numpy as np
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 4  # a provider that fails to load is what we report, not ORT's log
    try:
        session = ort.InferenceSession(tiny_model(), sess_options=options, providers=providers)
        session.run(None, {"x": np.ones((1, 4), np.float32)})
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
    return Check("provider cuda", "fail", f"the GPU is not usable ({why})", GPU_LIBRARIES_FIX)


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
            "optional: pip install tensorrt-cu12 (matching ONNX Runtime's TensorRT)",
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


# ------------------------------------------------------------------------------------ NVIDIA libraries


def first_loadable(names: tuple[str, ...]) -> str | None:
    """The first library name ctypes can load (the system's search path, then the nvidia pip packages)."""
    for name in names:
        for candidate in (name, *pip_library_paths(name)):
            try:
                ctypes.CDLL(candidate)
                return name
            except OSError:
                continue
    return None


def pip_library_paths(soname: str) -> list[str]:
    """Where the nvidia-* and tensorrt wheels put a library (ONNX Runtime finds them there too)."""
    import site

    roots = [Path(p) for p in (*site.getsitepackages(), site.getusersitepackages())]
    found = []
    for root in roots:
        for pattern in (f"nvidia/*/lib/{soname}", f"tensorrt_libs/{soname}"):
            found += [str(p) for p in root.glob(pattern)]
    return found


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
    loaded = {role: first_loadable(names) for role, names in CUDA_LIBRARIES.items()}
    missing = [role for role, name in loaded.items() if name is None]
    if not missing:
        return Check("cuda libraries", "ok", ", ".join(loaded.values()))
    detail = f"not found: {', '.join(f'lib{role}' for role in missing)}"
    if not driver:
        return Check(
            "cuda libraries",
            "warn",
            detail + " (not needed without a GPU)",
            "nothing to do on a CPU machine; on a GPU machine " + GPU_LIBRARIES_FIX,
        )
    return Check("cuda libraries", "fail", detail + ": ONNX Runtime cannot use the GPU", GPU_LIBRARIES_FIX)


# ------------------------------------------------------------------------------------ video


def check_pyav() -> Check:
    import av

    versions = getattr(av, "library_versions", {})
    codec = versions.get("libavcodec")
    ffmpeg = f", libavcodec {'.'.join(map(str, codec))}" if codec else ""
    return Check("pyav / ffmpeg", "ok", f"PyAV {av.__version__}{ffmpeg}")


def check_encoder(codec: str, driver: bool) -> Check:
    from lipsync_render.media.video import encoder_opens

    name = f"encoder {codec}"
    if encoder_opens(codec):
        return Check(name, "ok", "opens a 256x144 yuv420p stream")
    if codec == "libx264":
        return Check(
            name,
            "fail",
            "FFmpeg cannot open libx264: no MP4 can be written",
            "use the PyPI wheels of PyAV, which bundle libx264: pip install --force-reinstall av",
        )
    if not driver:
        return Check(
            name, "warn", "cannot open without an NVIDIA GPU; libx264 is used", "nothing to do on a CPU machine"
        )
    return Check(
        name,
        "warn",
        "cannot open although a driver is present (a GPU without NVENC, or its sessions "
        "are all in use); libx264 is used",
        "optional: --encoder libx264 is the default fallback",
    )


# ------------------------------------------------------------------------------------ disk and packages


def package_search_dirs() -> list[Path]:
    """The existing folders ``--model NAME`` looks in, each once."""
    from lipsync_render.package.loader import package_search_dirs as search_dirs

    unique = {}
    for d in search_dirs():
        if d.is_dir():
            unique.setdefault(d.resolve(), d)
    return list(unique.values())


def check_disk(paths: list[Path]) -> list[Check]:
    """Free space of each distinct file system among ``paths`` (warn under 5 GiB)."""
    checks, seen = [], set()
    for path in paths:
        if not path.exists() or path.stat().st_dev in seen:
            continue
        seen.add(path.stat().st_dev)
        free = shutil.disk_usage(path).free
        detail = f"{free / (1 << 30):.1f} GiB free at {path}"
        if free < LOW_DISK_BYTES:
            checks.append(
                Check(
                    "disk",
                    "warn",
                    detail,
                    "free some space: a package is ~1.4 GiB per 500 frames and each minute of 720p video tens of MB",
                )
            )
        else:
            checks.append(Check("disk", "ok", detail))
    return checks


def find_packages(dirs: list[Path]) -> list[str]:
    """Every package directory (one holding a manifest) directly inside ``dirs``."""
    from lipsync_render.package.loader import MANIFEST

    found = []
    for directory in dirs:
        found += [
            str(p)
            for p in sorted(directory.iterdir())
            if p.is_dir() and not p.name.startswith(".") and (p / MANIFEST).is_file()
        ]
    return found


def check_packages(models: list[str]) -> list[Check]:
    """Full validation (checksums included) of each package."""
    from lipsync_render.package.loader import validate_package

    if not models:
        return [
            Check(
                "packages",
                "warn",
                "no model packages found in ./packages or $LIPSYNC_PACKAGES",
                "lipsync package synth demo (a synthetic one) or lipsync package build NAME --from DATASET",
            )
        ]
    checks = []
    for model in models:
        problems = validate_package(model)
        name = f"package {Path(model).name}"
        if not problems:
            checks.append(Check(name, "ok", f"valid, checksums match ({model})"))
            continue
        more = f" ({len(problems) - 1} more)" if len(problems) > 1 else ""
        checks.append(
            Check(
                name,
                "fail",
                problems[0] + more,
                f"rebuild it (lipsync package build/synth) or restore it from a good copy; "
                f"'lipsync package validate {model}' lists every problem",
            )
        )
    return checks
