"""The Renderer: a package loaded once (models, compositing pool, video encoder process), rendering many files."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

from lipsync_render.contract import AUDIO_ENCODER
from lipsync_render.errors import DeviceError, RenderError
from lipsync_render.media.audio import AudioStream
from lipsync_render.options import RenderOptions, SessionOptions, split_options
from lipsync_render.package import Package, load_package
from lipsync_render.paths import replaceable_problem
from lipsync_render.planning.session_plan import plan_session
from lipsync_render.rendering.child_process import refuse_in_a_starting_helper
from lipsync_render.rendering.compositing_pool import CompositingPool, CompositingPoolBroken
from lipsync_render.rendering.encoding_process import VideoEncoderProcess
from lipsync_render.rendering.partials import remove_stale_partials
from lipsync_render.rendering.pipeline import RenderRun
from lipsync_render.rendering.resources import RenderResources
from lipsync_render.rendering.result import RenderResult
from lipsync_render.rendering.scheduling import call_at_low_priority, call_on_helper_thread, quick_gil_handoff
from lipsync_render.runtimes import get_backend

log = logging.getLogger(__name__)


class Renderer:
    """Holds a package, its models, the compositing pool and the video encoder; renders any number of files.

    The session plan (``planning.session_plan``) decides every automatic setting once; the Renderer loads what it
    says and keeps it as ``plan`` (re-planned for the CPU if a GPU fails under ``--device auto``), which every
    result records. Per-render options go to :meth:`render`.
    """

    def __init__(self, model: str | os.PathLike | Package, options: SessionOptions | None = None):
        refuse_in_a_starting_helper()
        start = time.perf_counter()
        self.package = model if isinstance(model, Package) else load_package(model)
        # On a helper thread that leaves signals to this one: --precision auto may load and run models to measure.
        self.plan = call_at_low_priority(plan_session, self.package, options or SessionOptions(), True, log.info)
        self.backend = get_backend(self.plan.backend)
        self.renders = 0
        self._restart_pool = False
        self.pool = self.encoder_process = None
        try:
            self._start_helpers()  # worker processes start while the models load
            self._load_models()
            self.pool.wait_ready()
            self.encoder_process.wait_ready()
        except BaseException:
            self.close()
            raise
        self.load_seconds = time.perf_counter() - start

    def _start_helpers(self) -> None:
        """The compositing pool, its shared ring and the video encoder process, sized by the plan."""
        plan = self.plan
        self.slots = max(16, 2 * plan.batch_size + 2 * plan.workers + 4)  # covers IPC latency
        self.pool = CompositingPool(self.package.frames, *plan.output_size, self.slots, plan.workers)
        self.encoder_process = VideoEncoderProcess(self.pool.shm.name, self.pool.layout)

    def _load_models(self) -> None:
        """The UNet (warmed up on a GPU), the plan for the device it really runs on, then the audio encoder."""
        planned = self.plan
        self.unet = self._load_unet()
        if self.unet.device != planned.device_kind:
            self.plan = planned.on_device(self.unet.device, self.backend, self.package)
            if (self.plan.batch_size, self.plan.workers) != (planned.batch_size, planned.workers):
                self.close()  # sized for a GPU that is not there: resize the pool and ring, reload at the CPU batch
                self._start_helpers()
                self.unet = self._load_unet()
        options = self.plan.load_options
        self.audio_encoder = call_on_helper_thread(self.backend.load, self.package, AUDIO_ENCODER, options)

    def _load_unet(self):
        """The UNet, its threads at low priority; on a GPU warmed up now (engine builds, autotuning, graph capture),
        not mid-render. A GPU that fails there under ``--device auto`` gives way to the CPU, and says so."""
        plan = self.plan
        unet = call_at_low_priority(self.backend.load, self.package, plan.unet_contract, plan.load_options)
        if unet.device == "cpu":
            return unet
        try:
            unet.warm_up()
        except DeviceError as exc:
            if plan.requested.device != "auto":
                raise
            log.warning("%s Rendering on the CPU with CPU settings instead.", exc)
            on_cpu = plan.on_device("cpu", self.backend, self.package)
            return call_at_low_priority(self.backend.load, self.package, on_cpu.unet_contract, on_cpu.load_options)
        return unet

    @property
    def providers(self) -> list[str]:
        return self.unet.providers

    def close(self) -> None:
        if self.encoder_process is not None:
            self.encoder_process.close()
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
        if not self.encoder_process.alive:  # a previous render lost it
            self.encoder_process = VideoEncoderProcess(self.pool.shm.name, self.pool.layout)
        if self._restart_pool:
            self.pool.restart()
            self._restart_pool = False
        self.renders += 1
        resources = RenderResources(
            self.package, self.unet, self.audio_encoder, self.pool, self.encoder_process, self.slots
        )
        run = RenderRun(resources, self.plan, options or RenderOptions(), AudioStream(audio_path), output_path)
        try:
            with quick_gil_handoff():
                return run.execute(self.renders, started, on_progress)
        except CompositingPoolBroken:
            self._restart_pool = True  # a worker died: the next render starts fresh worker processes
            raise


def render(audio: str | os.PathLike, model: str | os.PathLike, output: str | os.PathLike, **options) -> RenderResult:
    """Render one audio file with a package: ``render("speech.wav", "demo", "out.mp4", batch_size=8, crf=20)``.

    ``options`` are any session or render option by name (see ``lipsync_render.options``).
    """
    session, per_render = split_options(options)
    with Renderer(model, session) as renderer:
        return renderer.render(audio, output, per_render)
