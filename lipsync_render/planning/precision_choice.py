"""``--precision auto`` on the CPU: the fastest backend and precision whose UNet output stays within 45 dB PSNR of
fp32 on the package's own frames and audio (a policy of the session plan, ``planning.session_plan``).

Every candidate (ONNX Runtime fp32 and int8, OpenVINO fp32, bf16 where the CPU has it, and int8) is run on held-out
calibration inputs against the ONNX Runtime fp32 reference, then timed at the batch it would render with. The
choice and its numbers are cached in the package's cache, keyed by package, host, thread count and backend
versions, so the measurement happens once.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from lipsync_render import __version__, json_bounded
from lipsync_render.contract import UNET
from lipsync_render.errors import DeviceError
from lipsync_render.options import SessionOptions
from lipsync_render.package import Package
from lipsync_render.planning.quality import psnr
from lipsync_render.planning.settings import automatic_settings
from lipsync_render.runtimes import get_backend
from lipsync_render.runtimes.calibration import calibration_inputs

GATE_DB = 45.0
REFERENCE = ("onnxruntime", "fp32")
MIN_GAIN_MS, MIN_GAIN_SHARE = 1.0, 0.10  # leave the reference only to save at least this per frame
CANDIDATES = {"onnxruntime": ("fp32", "int8"), "openvino": ("fp32", "bf16", "int8")}
MEASURED_BACKENDS = frozenset(CANDIDATES)  # the backends --precision auto measures on the CPU
TIMED_BATCHES = 5
CACHE_FILE = "precision-auto.json"
CHOICE_VERSION = 3  # 3: OpenVINO runs the UNet at a static batch, so its timings changed


@dataclass
class Measurement:
    """One candidate: its PSNR against fp32 (dB) and UNet milliseconds per frame, or why it could not run."""

    backend: str
    precision: str
    psnr_db: float | None = None
    ms_per_frame: float | None = None
    skipped: str | None = None

    @property
    def passes(self) -> bool:
        return self.skipped is None and self.psnr_db is not None and self.psnr_db >= GATE_DB


@dataclass
class PrecisionChoice:
    """What ``auto`` chose, with every measurement behind it."""

    backend: str
    precision: str
    psnr_db: float | None
    ms_per_frame: float | None
    measurements: list[Measurement] = field(default_factory=list)
    cached: bool = False

    def describe(self) -> str:
        quality = "reference" if self.psnr_db is None or self.psnr_db == float("inf") else f"{self.psnr_db:.1f} dB"
        speed = f", {self.ms_per_frame:.1f} ms/frame" if self.ms_per_frame else ""
        return f"{self.backend} {self.precision} ({quality}{speed})"


def pick(measurements: list[Measurement], backend: str = "auto") -> Measurement:
    """The fastest candidate within the gate, if it beats the reference (ONNX Runtime fp32) by a real margin;
    else the reference, which is bit-exact: timing noise alone never moves a render off it.

    An explicit ``backend`` is the user's choice and is kept: only its precisions are candidates (the reference is
    still measured, as the yardstick of quality), and its own fp32 stands in for the reference.
    """
    if backend != "auto":
        allowed = [m for m in measurements if m.backend == backend]
        own = next((m for m in allowed if m.precision == "fp32"), Measurement(backend, "fp32"))
        return _fastest_beating(own, allowed)
    reference = next((m for m in measurements if (m.backend, m.precision) == REFERENCE), None)
    reference = reference or Measurement(*REFERENCE, float("inf"), None)
    return _fastest_beating(reference, measurements)


def _fastest_beating(baseline: Measurement, measurements: list[Measurement]) -> Measurement:
    """The fastest passing candidate if it saves a real margin over ``baseline``, else ``baseline``."""
    passing = [m for m in measurements if m.passes and m.ms_per_frame is not None]
    if not passing:
        return baseline
    best = min(passing, key=lambda m: m.ms_per_frame)
    if baseline.ms_per_frame is not None:
        margin = max(MIN_GAIN_MS, MIN_GAIN_SHARE * baseline.ms_per_frame)
        if baseline.ms_per_frame - best.ms_per_frame < margin:
            return baseline
    return best


def choose_precision(package: Package, options: SessionOptions, on_progress=None) -> PrecisionChoice:
    """The choice for this package and host: from the cache, else measured now (and cached)."""
    from lipsync_render.package.cache import cache_path

    cached = cached_choice(package, options)
    if cached is not None:
        return cached
    if on_progress is not None:
        on_progress("measuring backends and precisions for --precision auto (once per package and host)")
    measurements = measure(package, options)
    best = pick(measurements, options.backend)
    choice = PrecisionChoice(best.backend, best.precision, best.psnr_db, best.ms_per_frame, measurements)
    path = cache_path(package, CACHE_FILE)
    entries = _read_cache(path)
    entries[choice_key(package, options)] = {k: v for k, v in asdict(choice).items() if k != "cached"}
    _write_cache(path, entries)
    return choice


def measure(package: Package, options: SessionOptions) -> list[Measurement]:
    """Quality and speed of every candidate backend and precision on the package's own frames."""
    feeds = calibration_inputs(package, 8, seed=1)
    visual = np.concatenate([v for v, _ in feeds])
    audio = np.concatenate([a for _, a in feeds])
    reference = None
    results = []
    for backend_name, precision in candidates(options.backend):
        try:
            backend = get_backend(backend_name)
            # each at the batch it renders with by default on the CPU, so the choice holds whatever the batch
            trial = replace(options, backend=backend_name, precision=precision, device="cpu", batch_size=None)
            trial = automatic_settings(trial, "cpu")
            model = backend.load(package, UNET, trial)
            output = model.run(visual, audio)
        except DeviceError as exc:
            results.append(Measurement(backend_name, precision, skipped=str(exc)))
            continue
        if reference is None:  # the first candidate is ONNX Runtime fp32
            reference = output
        results.append(
            Measurement(backend_name, precision, psnr(reference, output), _ms_per_frame(model, visual, audio))
        )
    return results


def candidates(backend: str) -> list[tuple[str, str]]:
    """ONNX Runtime fp32 first (the reference), then every other candidate of the backends allowed."""
    pairs = [("onnxruntime", "fp32")]
    for name, precisions in CANDIDATES.items():
        if backend in ("auto", name):
            pairs += [(name, precision) for precision in precisions if (name, precision) != pairs[0]]
    return pairs


def _ms_per_frame(model, visual: np.ndarray, audio: np.ndarray) -> float:
    batch = model.batch_size
    rows = np.resize(np.arange(len(visual)), batch)
    model.run(visual[rows], audio[rows])
    seconds = []
    for _ in range(TIMED_BATCHES):
        tick = time.perf_counter()
        model.run(visual[rows], audio[rows])
        seconds.append(time.perf_counter() - tick)
    return 1000 * statistics.median(seconds) / batch


def choice_key(package: Package, options: SessionOptions) -> str:
    """Package, host, threads and every backend's version: change any and the choice is measured again."""
    # The backends measured (not torch: it is not a candidate), by their installed distributions' versions: read
    # from package metadata, not by importing each (OpenVINO alone added 0.1-0.25 s to every cached render).
    versions = [f"{name}={_installed_version(name)}" for name in CANDIDATES]
    host = f"{_cpu_model()}/{os.cpu_count()}/{platform.machine()}"
    return "|".join(
        [
            f"v{CHOICE_VERSION}",
            __version__,
            package.checksum[:16],
            host,
            f"threads={options.threads}",
            f"backend={options.backend}",
            *versions,
        ]
    )


# The distributions that install each backend's Python package, most common first.
DISTRIBUTIONS = {
    "onnxruntime": ("onnxruntime", "onnxruntime-gpu", "onnxruntime-openvino", "onnxruntime-directml"),
    "openvino": ("openvino",),
}


def _installed_version(name: str) -> str:
    """The version of the distribution that installed the package ``name``: from the name of its ``.dist-info``
    folder beside the package (0.6 ms for both backends), else from package metadata, which scans every folder
    on the path (27 ms)."""
    import importlib.util
    from importlib import metadata

    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):  # blocked (None in sys.modules), or a parent that will not import
        spec = None
    if spec is None:
        return "absent"
    candidates = DISTRIBUTIONS.get(name, (name,))
    if spec.origin:
        folder = Path(spec.origin).parent.parent
        for distribution in candidates:
            prefix = distribution.replace("-", "_") + "-"
            for info in sorted(folder.glob(f"{prefix}*.dist-info")):
                return info.name[len(prefix) : -len(".dist-info")]
    for distribution in candidates:
        try:
            return metadata.version(distribution)
        except metadata.PackageNotFoundError:
            continue
    return "absent"


def _cpu_model() -> str:
    from lipsync_render.host import cpu_model

    return cpu_model()


def _read_cache(path) -> dict:
    try:
        data = json_bounded.read(path)
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError, json_bounded.JsonProblem):
        return {}


def _write_cache(path, entries: dict) -> None:
    from lipsync_render.paths import write_file_atomically

    write_file_atomically(path, lambda temporary: temporary.write_text(json.dumps(entries, indent=1) + "\n"))


def cached_choice(package: Package, options: SessionOptions) -> PrecisionChoice | None:
    """The cached choice, without measuring (for doctor and resume checks)."""
    from lipsync_render.package.cache import cache_path

    entry = _read_cache(cache_path(package, CACHE_FILE)).get(choice_key(package, options))
    if entry is None:
        return None
    measurements = [Measurement(**m) for m in entry.pop("measurements")]
    return PrecisionChoice(**entry, measurements=measurements, cached=True)
