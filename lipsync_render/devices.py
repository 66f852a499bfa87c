"""Device requests and what the machine has: the NVIDIA driver and GPUs, whatever the runtime."""

from __future__ import annotations

import ctypes
import re
import shutil
import subprocess
from dataclasses import dataclass

from lipsync_render.errors import DeviceError

DEVICE_PATTERN = re.compile(r"^(auto|cpu|cuda(:\d+)?|tensorrt(:\d+)?)$")


@dataclass(frozen=True)
class DeviceRequest:
    """What the user asked for: kind is auto, cpu, cuda or tensorrt; index is the GPU number."""

    kind: str
    index: int = 0

    @classmethod
    def parse(cls, text: str) -> DeviceRequest:
        text = text.strip().lower()
        if not DEVICE_PATTERN.match(text):
            raise DeviceError(f"Unknown device '{text}': use auto, cpu, cuda, cuda:N or tensorrt.")
        kind, _, index = text.partition(":")
        return cls(kind, int(index or 0))


def cuda_driver_present() -> bool:
    """Whether the NVIDIA driver library loads: a cheap probe before asking a runtime for CUDA."""
    for name in ("libcuda.so.1", "libcuda.so", "nvcuda.dll"):
        try:
            ctypes.CDLL(name)
            return True
        except OSError:
            continue
    return False


def nvidia_smi(fields: str, index: int | None = None) -> list[str]:
    """One line per GPU of ``nvidia-smi --query-gpu=FIELDS`` (CSV, no header); empty without NVIDIA tools."""
    if shutil.which("nvidia-smi") is None:
        return []
    command = ["nvidia-smi", f"--query-gpu={fields}", "--format=csv,noheader"]
    if index is not None:
        command += ["-i", str(index)]
    try:
        out = subprocess.run(command, capture_output=True, text=True, timeout=15, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip() for line in out.splitlines() if line.strip()]


def gpu_name(index: int = 0) -> str | None:
    """The name of NVIDIA GPU ``index``, or None when there is none."""
    names = nvidia_smi("name", index)
    return names[0] if names else None
