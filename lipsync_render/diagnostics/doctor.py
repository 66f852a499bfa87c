"""`lipsync doctor`: what is really usable on this machine, and how to fix what is not.

Every accelerator check runs the real thing (an ONNX Runtime session, an encoder that opens), because ONNX
Runtime and FFmpeg both fall back silently when a GPU library is missing.
"""

from __future__ import annotations

import ctypes
import shutil
from dataclasses import dataclass
from pathlib import Path

from lipsync_render.devices import cuda_driver_present, gpu_name
from lipsync_render.runtimes.ort.sessions import CPU, CUDA, TENSORRT, available_providers, preload_gpu_libraries

LOW_DISK_BYTES = 5 << 30
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
    from lipsync_render.diagnostics.torch_check import check_torch

    driver = cuda_driver_present()
    checks = [
        check_onnxruntime(),
        check_cpu_provider(),
        check_driver(driver),
        check_cuda_libraries(driver),
        check_cuda_provider(driver),
        check_tensorrt(driver),
        check_torch(driver),
        check_pyav(),
        *(check_encoder(codec, driver) for codec in ("libx264", "libx265", "h264_nvenc", "hevc_nvenc")),
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


# ------------------------------------------------------------------------------------ NVIDIA libraries


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


# ------------------------------------------------------------------------------------ video


def check_pyav() -> Check:
    import av

    versions = getattr(av, "library_versions", {})
    codec = versions.get("libavcodec")
    ffmpeg = f", libavcodec {'.'.join(map(str, codec))}" if codec else ""
    return Check("pyav / ffmpeg", "ok", f"PyAV {av.__version__}{ffmpeg}")


def check_encoder(codec: str, driver: bool) -> Check:
    from lipsync_render.media.video import PROBE_SIZE, SOFTWARE_ENCODERS, encoder_opens, software_encoder

    name = f"encoder {codec}"
    if encoder_opens(codec):
        return Check(name, "ok", f"opens a {PROBE_SIZE[0]}x{PROBE_SIZE[1]} yuv420p stream with the writer's options")
    if codec in SOFTWARE_ENCODERS:
        default = codec == "libx264"
        return Check(
            name,
            "fail" if default else "warn",
            f"FFmpeg cannot open {codec}: " + ("no MP4 can be written" if default else "--codec hevc cannot run"),
            f"use the PyPI wheels of PyAV, which bundle {codec}: pip install --force-reinstall av",
        )
    fallback = software_encoder(codec)
    if not driver:
        return Check(
            name, "warn", f"cannot open without an NVIDIA GPU; {fallback} is used", "nothing to do on a CPU machine"
        )
    return Check(
        name,
        "warn",
        "cannot open although a driver is present (a GPU without NVENC, or its sessions "
        f"are all in use); {fallback} is used",
        "optional: --video-encoder software is the default fallback",
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


def check_auto_precision(model: str) -> Check:
    """What ``--precision auto`` renders this package with here, from its cached measurement."""
    from lipsync_render.options import SessionOptions
    from lipsync_render.package import load_package
    from lipsync_render.runtimes.precision_choice import cached_choice

    choice = cached_choice(load_package(model, verify_checksums=False), SessionOptions())
    name = f"auto precision {Path(model).name}"
    if choice is None:
        return Check(
            name, "ok", "not measured on this host yet: the first CPU render with --precision auto measures it"
        )
    others = ", ".join(
        f"{m.backend} {m.precision} "
        + (f"{m.psnr_db:.1f} dB {m.ms_per_frame:.1f} ms" if m.skipped is None else "skipped")
        for m in choice.measurements
    )
    return Check(name, "ok", f"{choice.describe()}; measured: {others}")


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
            checks.append(check_auto_precision(model))
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
