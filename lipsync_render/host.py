"""The machine the numbers come from, and the memory a run holds: host facts, below every other layer.

The project's own version is the caller's to give (:func:`host_info`), so this module needs nothing above it.
"""

from __future__ import annotations

import os
import platform
import resource
import sys
import threading
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from lipsync_render.devices import nvidia_smi

RSS_POLL_SECONDS = 0.05
MB = 1024 * 1024


@dataclass
class HostInfo:
    """The machine and libraries the numbers come from."""

    cpu: str
    logical_cores: int
    physical_cores: int | None
    usable_cores: int
    memory_gb: float
    gpu: str | None
    onnxruntime: str
    available_providers: list[str]
    providers: list[str]  # what the sessions actually run on
    pyav: str
    ffmpeg: str
    ffmpeg_libraries: dict[str, str]
    encoder: str
    preset: str
    crf: int
    python: str
    platform: str
    lipsync_render: str
    date: str


class PeakRSS:
    """Samples the resident memory of this process plus its children (compositing workers) in a thread.

    Shared pages (the frame ring, memory-mapped package frames) count once per process that touches them, so
    the sum is an upper bound on what the render really holds.
    """

    def __init__(self, interval: float = RSS_POLL_SECONDS):
        self.interval = interval
        self.peak_bytes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, name="rss-sampler", daemon=True)

    def __enter__(self) -> PeakRSS:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()

    def _poll(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def _sample(self) -> None:
        import psutil

        process = psutil.Process()
        total = process.memory_info().rss
        for child in process.children(recursive=True):
            try:
                total += child.memory_info().rss
            except psutil.Error:  # a worker that just exited
                continue
        self.peak_bytes = max(self.peak_bytes, total)


def max_rss_mb() -> float:
    """Peak resident memory of this process so far (ru_maxrss is in KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / MB if sys.platform == "darwin" else peak / 1024


def host_info(providers: list[str], encoder: str, preset: str, crf: int, version: str) -> HostInfo:
    """CPU, memory, GPU, ONNX Runtime, PyAV/FFmpeg versions and the date; ``version`` is lipsync-render's."""
    import av
    import onnxruntime as ort
    import psutil

    libraries = {name: ".".join(map(str, version)) for name, version in av.library_versions.items()}
    return HostInfo(
        cpu=cpu_model(),
        logical_cores=os.cpu_count() or 1,
        physical_cores=psutil.cpu_count(logical=False),
        usable_cores=len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1),
        memory_gb=round(psutil.virtual_memory().total / 1024**3, 1),
        gpu="; ".join(nvidia_smi("name,memory.total,driver_version")) or None,
        onnxruntime=ort.__version__,
        available_providers=list(ort.get_available_providers()),
        providers=list(providers),
        pyav=av.__version__,
        ffmpeg=str(getattr(av, "ffmpeg_version_info", "") or f"libavcodec {libraries.get('libavcodec', '?')}"),
        ffmpeg_libraries=libraries,
        encoder=encoder,
        preset=preset,
        crf=crf,
        python=platform.python_version(),
        platform=platform.platform(),
        lipsync_render=version,
        date=datetime.now(timezone.utc).astimezone().isoformat(timespec="seconds"),
    )


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo, else what the platform module knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith(("model name", "hardware", "cpu model")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"
