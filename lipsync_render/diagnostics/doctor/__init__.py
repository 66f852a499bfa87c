"""`lipsync doctor`: what is really usable on this machine, and how to fix what is not.

Every accelerator check runs the real thing (an ONNX Runtime session, an encoder that opens), because ONNX
Runtime and FFmpeg both fall back silently when a GPU library is missing.
"""

from __future__ import annotations

from pathlib import Path

from lipsync_render.devices import cuda_driver_present
from lipsync_render.diagnostics.doctor.check import Check
from lipsync_render.diagnostics.doctor.nvidia import check_cuda_libraries, check_driver
from lipsync_render.diagnostics.doctor.packages import check_disk, check_packages, find_packages, package_search_dirs
from lipsync_render.diagnostics.doctor.providers import (
    check_cpu_provider,
    check_cuda_provider,
    check_onnxruntime,
    check_tensorrt,
)
from lipsync_render.diagnostics.doctor.torch_check import check_torch
from lipsync_render.diagnostics.doctor.video import check_encoder, check_pyav


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
