"""The Renderer: a package loaded once (models, compositing pool, video encoder process), rendering many files."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from lipsync_render.contract import AUDIO_ENCODER, UNET, UNET_UINT8, ModelContract
from lipsync_render.errors import DeviceError, RenderError
from lipsync_render.media.audio import AudioStream
from lipsync_render.media.video import select_video_encoder
from lipsync_render.option_values import frame_size
from lipsync_render.options import RenderOptions, SessionOptions, split_options
from lipsync_render.package import Package, load_package
from lipsync_render.paths import replaceable_problem
from lipsync_render.rendering.child_process import refuse_in_a_starting_helper
from lipsync_render.rendering.compositing_pool import CompositingPool
from lipsync_render.rendering.encoding_process import VideoEncoderProcess
from lipsync_render.rendering.partials import remove_stale_partials
from lipsync_render.rendering.pipeline import RenderRun
from lipsync_render.rendering.result import RenderResult
from lipsync_render.rendering.scheduling import call_at_low_priority, call_on_helper_thread, quick_gil_handoff
from lipsync_render.runtimes import get_backend
from lipsync_render.runtimes.precision_choice import CANDIDATES, choose_precision

log = logging.getLogger(__name__)
MEASURED_BACKENDS = frozenset(CANDIDATES)  # the backends --precision auto measures on the CPU


class Renderer:
    """Holds a package, its models, the compositing pool and the video encoder; renders any number of files.

    ``options`` are fixed for the Renderer's life; automatic ones (batch size, workers, x264 threads) are
    resolved for the device the backend will run on. Per-render options go to :meth:`render`.
    """

    def __init__(self, model: str | os.PathLike | Package, options: SessionOptions | None = None):
        refuse_in_a_starting_helper()
        start = time.perf_counter()
        self.package = model if isinstance(model, Package) else load_package(model)
        self.precision_choice = None
        self.requested = self._fixed_precision(options or SessionOptions())
        self.backend = get_backend(self.requested.backend, self.requested.device)
        self.planned_device = self.backend.planned_device(self.requested.device)
        self.options = self.requested.resolve(self.planned_device)
        self.renders = 0
        self.pool_broken = False
        self.pool = self.video_encoder = None
        try:
            self._start_helpers()  # worker processes start while the models load
            self._load_models()
            self.pool.wait_ready()
            self.video_encoder.wait_ready()
        except BaseException:
            self.close()
            raise
        self.load_seconds = time.perf_counter() - start

    def _fixed_precision(self, requested: SessionOptions) -> SessionOptions:
        """``--precision auto``: on the CPU the measured choice of backend and precision, on a GPU fp32 (and fp32
        for a backend the measurement does not cover, such as torch: it never moves a render to another backend)."""
        if requested.precision != "auto":
            return requested
        backend = get_backend(requested.backend, requested.device)
        if backend.planned_device(requested.device) != "cpu" or backend.name not in MEASURED_BACKENDS:
            return replace(requested, precision="fp32")
        self.precision_choice = call_at_low_priority(choose_precision, self.package, requested, log.info)
        return replace(requested, backend=self.precision_choice.backend, precision=self.precision_choice.precision)

    def _start_helpers(self) -> None:
        """The compositing pool, its shared ring and the video encoder process, sized by the options."""
        self.slots = max(16, 2 * self.options.batch_size + 2 * self.options.workers + 4)  # covers IPC latency
        self.pool = CompositingPool(self.package.frames, *self.output_size, self.slots, self.options.workers)
        self.video_encoder = VideoEncoderProcess(self.pool.shm.name, self.pool.layout)

    def _load_models(self) -> None:
        """The UNet (warmed up on a GPU), settings for the device it really runs on, the audio encoder, the codec."""
        planned = self.options
        self.unet = self._load_unet(planned)
        if self.unet.device != self.planned_device:
            self.options = settings_for_device(self.requested, self.unet.device)
            if (self.options.batch_size, self.options.workers) != (planned.batch_size, planned.workers):
                self.close()  # sized for a GPU that is not there: resize the pool and ring, reload at the CPU batch
                self._start_helpers()
                self.unet = self._load_unet(self.options, self.unet.device)
        self.video_codec = select_video_encoder(self.options.codec, self.options.video_encoder, *self.output_size)
        self.audio_encoder = call_on_helper_thread(self.backend.load, self.package, AUDIO_ENCODER, self.options)

    def _load_unet(self, options: SessionOptions, device_kind: str | None = None):
        """The UNet, its threads at low priority; on a GPU warmed up now (engine builds, autotuning, graph capture),
        not mid-render. A GPU that fails there under ``--device auto`` gives way to the CPU, and says so."""
        contract = self._unet_contract(options.unet_io, device_kind or self.planned_device)
        unet = call_at_low_priority(self.backend.load, self.package, contract, options)
        if unet.device == "cpu":
            return unet
        try:
            unet.warm_up()
        except DeviceError as exc:
            if self.requested.device != "auto":
                raise
            log.warning("%s Rendering on the CPU with CPU settings instead.", exc)
            contract = self._unet_contract(options.unet_io, "cpu")
            return call_at_low_priority(self.backend.load, self.package, contract, replace(options, device="cpu"))
        return unet

    def _unet_contract(self, unet_io: str, device_kind: str) -> ModelContract:
        """``UNET_UINT8`` (crops in, uint8 predictions out) or the float ``UNET``, as ``--unet-io`` asks;
        ``auto`` takes uint8 on a GPU where the backend can."""
        can = self.backend.uint8_unet(device_kind)
        if unet_io == "uint8" and not can:
            raise DeviceError(
                f"The {self.backend.name} backend cannot take uint8 crops on {device_kind}; use --unet-io float."
            )
        uint8 = unet_io == "uint8" or (unet_io == "auto" and can and device_kind != "cpu")
        return UNET_UINT8 if uint8 else UNET

    @property
    def output_size(self) -> tuple[int, int]:
        """(width, height) of the encoded frames: ``--size``, else the package's."""
        return frame_size(self.options.size) if self.options.size else (self.package.width, self.package.height)

    @property
    def providers(self) -> list[str]:
        return self.unet.providers

    def close(self) -> None:
        if self.video_encoder is not None:
            self.video_encoder.close()
        if self.pool is not None:
            self.pool.close()

    def __enter__(self) -> Renderer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def render(
        self,
        audio_path: str | os.PathLike,
        output_path: str | os.PathLike,
        options: RenderOptions | None = None,
        on_progress: Callable[[int, int], None] | None = None,
    ) -> RenderResult:
        """Render one audio file to an MP4 (written to a temporary name, renamed when complete)."""
        started = time.perf_counter()
        audio_path, output_path = Path(audio_path), Path(output_path)
        problem = replaceable_problem(output_path, (audio_path, *self.package.files))
        if problem:
            raise RenderError(problem)
        remove_stale_partials(output_path)
        if not self.video_encoder.alive:  # a previous render lost it
            self.video_encoder = VideoEncoderProcess(self.pool.shm.name, self.pool.layout)
        if self.pool_broken:
            self.pool.restart()
            self.pool_broken = False
        self.renders += 1
        run = RenderRun(
            self, options or RenderOptions(), AudioStream(audio_path), audio_path, output_path, on_progress, started
        )
        with quick_gil_handoff():
            return run.execute()


def settings_for_device(requested: SessionOptions, device_kind: str) -> SessionOptions:
    """The automatic settings for the device the models really run on; a CPU fallback under ``auto`` also loads
    the rest on the CPU. Explicit values are kept."""
    if device_kind == "cpu" and requested.device == "auto":
        requested = replace(requested, device="cpu")
    return requested.resolve(device_kind)


def render(audio: str | os.PathLike, model: str | os.PathLike, output: str | os.PathLike, **options) -> RenderResult:
    """Render one audio file with a package: ``render("speech.wav", "demo", "out.mp4", batch_size=8, crf=20)``.

    ``options`` are any session or render option by name (see ``lipsync_render.options``).
    """
    session, per_render = split_options(options)
    with Renderer(model, session) as renderer:
        return renderer.render(audio, output, per_render)
