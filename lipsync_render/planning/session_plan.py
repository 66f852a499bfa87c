"""The session plan: every automatic choice of a session made once, in one place, and recorded.

``plan_session(package, options)`` turns a package and the requested session options into a frozen
:class:`SessionPlan`: the backend, the device it runs on, the UNet precision and how it was chosen, batch size,
compositing workers, threads, UNet input/output, the model contract and the FFmpeg video encoder. The Renderer
loads what the plan says, bench and doctor report it, and results and sidecars record it, so a worker anywhere can
answer "is this output up to date for what I would do here?" by planning for itself and comparing
(:meth:`SessionPlan.output_identity`). Nothing else resolves ``auto``.

A plan is made before the models load, for the device the backend *plans* to use. If the UNet really lands
elsewhere (a CUDA that fails to load or warm up under ``--device auto``), :meth:`SessionPlan.on_device` re-plans for
the device it really runs on, so a CPU render never keeps GPU settings.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace

from lipsync_render.contract import UNET, UNET_UINT8, ModelContract
from lipsync_render.errors import DeviceError, LipsyncError, OptionError
from lipsync_render.media.video import select_video_encoder, software_encoder
from lipsync_render.model_shapes import batch_memory_problem, max_batch
from lipsync_render.option_values import frame_size
from lipsync_render.options import SessionOptions
from lipsync_render.package import Package
from lipsync_render.planning.precision_choice import (
    MEASURED_BACKENDS,
    PrecisionChoice,
    cached_choice,
    choose_precision,
)
from lipsync_render.planning.settings import automatic_settings, effective_threads
from lipsync_render.runtimes import Backend, get_backend

__all__ = ["OUTPUT_FIELDS", "SessionPlan", "device_settings", "plan_session"]

# What a finished output depends on among the plan's choices (with the render options that change the output).
OUTPUT_FIELDS = ("backend", "precision", "codec", "video_encoder", "output_size")


@dataclass(frozen=True)
class SessionPlan:
    """What a session really runs with. ``precision`` is None only in a plan made with ``measure=False`` whose
    automatic choice is not known yet on this host (it would be measured by a render)."""

    requested: SessionOptions
    backend: str
    device: str  # the device request the models load with (auto, cpu, cuda[:N], tensorrt[:N])
    device_kind: str  # where the UNet runs: cpu, cuda or tensorrt
    precision: str | None
    precision_source: str  # 'requested', 'auto: <why>' or 'auto: measured'/'auto: cached' with the choice
    batch_size: int
    workers: int
    threads: int  # inference threads actually used (0 in the options means all cores: counted here)
    encoder_threads: int  # x264/x265 threads, 0: the encoder's own choice
    unet_io: str  # uint8 or float
    codec: str  # h264 or hevc
    video_encoder: str  # the FFmpeg encoder: libx264, libx265, h264_nvenc or hevc_nvenc
    fallback_encoder: str | None  # what a file is encoded with if NVENC chosen by auto fails to open for it
    output_size: tuple[int, int]  # (width, height) of the encoded frames
    cuda_graph: bool = False
    precision_choice: PrecisionChoice | None = field(default=None, compare=False)

    @property
    def unet_contract(self) -> ModelContract:
        """``UNET_UINT8`` (crops in, uint8 predictions out) or the float ``UNET``."""
        return UNET_UINT8 if self.unet_io == "uint8" else UNET

    @property
    def load_options(self) -> SessionOptions:
        """The session options the backends load the models with: every automatic value filled in."""
        return replace(
            self.requested,
            backend=self.backend,
            device=self.device,
            precision=self.precision or "fp32",
            batch_size=self.batch_size,
            workers=self.workers,
            encoder_threads=self.encoder_threads,
            unet_io=self.unet_io,
        )

    def output_identity(self) -> dict:
        """The plan's choices that change what an output holds: equal identities, equal outputs (same inputs)."""
        identity = {name: getattr(self, name) for name in OUTPUT_FIELDS}
        identity["output_size"] = list(self.output_size)  # as a sidecar's JSON holds it
        return identity

    def to_dict(self) -> dict:
        """The plan as results, sidecars and ``--json`` record it."""
        record = asdict(self)
        record.pop("requested")
        record["precision_choice"] = self.precision_choice.describe() if self.precision_choice else None
        record["output_size"] = list(self.output_size)
        return record

    def on_device(self, device_kind: str, backend: Backend, package: Package) -> SessionPlan:
        """The plan for the device the UNet really runs on (a GPU that failed under ``--device auto``): the
        automatic settings for that device under the same batch rule, the models on the CPU too, explicit values
        kept."""
        if device_kind == self.device_kind:
            return self
        device = "cpu" if device_kind == "cpu" and self.requested.device == "auto" else self.device
        settings = automatic_settings(replace(self.requested, precision=self.precision or "fp32"), device_kind)
        return replace(
            self,
            device=device,
            device_kind=device_kind,
            batch_size=planned_batch(package, self.requested.batch_size, settings.batch_size, device_kind, device),
            workers=settings.workers,
            encoder_threads=settings.encoder_threads,
            unet_io=_unet_io(self.requested.unet_io, backend, device_kind),
        )


def plan_session(
    package: Package, options: SessionOptions | None = None, measure: bool = True, on_progress=None
) -> SessionPlan:
    """The plan for this package and these options on this machine.

    ``--precision auto`` on the CPU takes the measured choice (measured now and cached if ``measure``, else from
    the cache only, None when unknown); on a GPU, and for a backend the measurement does not cover (torch), fp32.
    An explicit ``--backend`` is kept: the measurement then only chooses among that backend's precisions.
    """
    requested = options or SessionOptions()
    backend = get_backend(requested.backend, requested.device)
    device_kind = backend.planned_device(requested.device)
    threads = effective_threads(requested.threads)
    precision, source, choice = requested.precision, "requested", None
    if precision == "auto":
        if device_kind != "cpu":
            precision, source = "fp32", "auto: fp32 on a GPU"
        elif backend.name not in MEASURED_BACKENDS:
            precision, source = "fp32", f"auto: fp32 ({backend.name} is not measured)"
        else:
            keyed = replace(requested, threads=threads)
            choice = choose_precision(package, keyed, on_progress) if measure else cached_choice(package, keyed)
            if choice is None:
                precision, source = None, "auto: not measured on this host yet"
            else:
                backend = get_backend(choice.backend)
                precision = choice.precision
                source = f"auto: {'cached' if choice.cached else 'measured'} {choice.describe()}"
    settings = automatic_settings(replace(requested, precision=precision or "fp32"), device_kind)
    size = frame_size(requested.size) if requested.size else (package.width, package.height)
    encoder = select_video_encoder(requested.codec, requested.video_encoder, *size)
    software = software_encoder(encoder)
    fallback = software if requested.video_encoder == "auto" and encoder != software else None
    return SessionPlan(
        requested=requested,
        backend=backend.name,
        device=requested.device,
        device_kind=device_kind,
        precision=precision,
        precision_source=source,
        batch_size=planned_batch(package, requested.batch_size, settings.batch_size, device_kind, requested.device),
        workers=settings.workers,
        threads=threads,
        encoder_threads=settings.encoder_threads,
        unet_io=_unet_io(requested.unet_io, backend, device_kind),
        codec=requested.codec,
        video_encoder=encoder,
        fallback_encoder=fallback,
        output_size=size,
        cuda_graph=requested.cuda_graph,
        precision_choice=choice,
    )


def planned_batch(package: Package, requested: int | None, automatic: int, device_kind: str, device: str) -> int:
    """The UNet batch: a batch axis the model fixes is a fact (an explicit other size is refused); then what the
    device's available memory holds at the model's planned bytes per sample (``model_shapes``): an explicit size
    beyond it is refused in a sentence, the automatic one is lowered to it. Never found by trial."""
    io = package.unet_io
    if io.fixed_batch:
        if requested and requested != io.fixed_batch:
            raise OptionError(
                f"The UNet model {package.unet_path} takes batches of exactly {io.fixed_batch} (its batch axis is "
                f"fixed); --batch-size {requested} cannot be used with it."
            )
        return io.fixed_batch
    available, where = available_memory(device_kind, device)
    problem = batch_memory_problem("UNet", io.sample_bytes, requested or automatic, available, where)
    if problem and requested:
        raise DeviceError(problem + " Use a smaller --batch-size.")
    limit = max_batch(io.sample_bytes, available)
    if limit is not None and limit < 1:
        raise DeviceError(problem)
    return min(automatic, limit) if limit is not None and not requested else requested or automatic


def available_memory(device_kind: str, device: str) -> tuple[int, str]:
    """(bytes available, how a sentence names the device): free GPU memory from nvidia-smi, else free RAM."""
    import psutil

    if device_kind != "cpu":
        from lipsync_render.devices import DeviceRequest, nvidia_smi

        try:
            index = DeviceRequest.parse(device).index
            free = nvidia_smi("memory.free", index)
            return int(float(free[0].split()[0])) << 20, f"GPU {index}"
        except (IndexError, ValueError, LipsyncError):
            return 0, f"GPU {device}"
    return psutil.virtual_memory().available, "this machine"


def device_settings(requested: SessionOptions) -> SessionOptions:
    """The automatic settings for the device this request plans to run on, without a package (bench's rows)."""
    return automatic_settings(
        requested, get_backend(requested.backend, requested.device).planned_device(requested.device)
    )


def _unet_io(requested: str, backend: Backend, device_kind: str) -> str:
    """``--unet-io``: uint8 where asked (an error where the backend cannot), float where asked; ``auto`` takes
    uint8 on a GPU where the backend can, float on the CPU (there the wrapper's work costs more than numpy's)."""
    can = backend.uint8_unet(device_kind)
    if requested == "uint8" and not can:
        raise DeviceError(f"The {backend.name} backend cannot take uint8 crops on {device_kind}; use --unet-io float.")
    return "uint8" if requested == "uint8" or (requested == "auto" and can and device_kind != "cpu") else "float"
