"""Every render option, defined once: type, allowed values, default, help, scope and effect on the output.

Options live in two dataclasses by scope. ``SessionOptions`` are fixed when a :class:`Renderer` loads its models,
compositing pool and video encoder; ``RenderOptions`` may change from one render to the next and are passed to
``Renderer.render``. Each field carries an :class:`OptionSpec`; the CLI flags, the ``render-many`` manifest
columns, bench's flags, the sidecar's output-affecting set and validation are all derived from these specs, so
a new option is one field here. Values are checked when an options object is made (OptionError, exit 2), before
anything loads.
"""

from __future__ import annotations

import dataclasses
import math
import re
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lipsync_render.errors import OptionError
from lipsync_render.option_values import (
    BLEND_PATTERN,
    FEATHER_PIXELS,
    FEATHER_RANGE,
    SIZE_PATTERN,
    feather_problem,
    size_problem,
)
from lipsync_render.runtimes.registry import BACKEND_CHOICES

CLI, JOBS, BENCH = "cli", "jobs", "bench"  # where an option can be set: flags, manifest columns, bench flags
EVERYWHERE = frozenset({CLI, JOBS, BENCH})
DEVICE_PATTERN = r"auto|cpu|cuda(:\d+)?|tensorrt(:\d+)?"
PRECISIONS = ("auto", "fp32", "fp16", "bf16", "int8")
VIDEO_CODECS = ("h264", "hevc")
VIDEO_ENCODERS = ("auto", "software", "nvenc")
UNET_IO = ("auto", "uint8", "float")
MAX_START_FRAME = 10**9  # the loop is periodic, so a phase never needs more than twice a package's frames
X264_PRESETS = (
    "ultrafast",
    "superfast",
    "veryfast",
    "faster",
    "fast",
    "medium",
    "slow",
    "slower",
    "veryslow",
    "placebo",
)


@dataclass(frozen=True)
class OptionSpec:
    """What an option may hold and where it appears; the name, type and default come from its dataclass field."""

    help: str
    choices: tuple[str, ...] | None = None
    minimum: int | None = None
    maximum: int | None = None
    pattern: str | None = None  # a regular expression the whole value must match (ignoring case)
    metavar: str | None = None
    label: str | None = None  # how sentences name it; default: the name in words ("batch size")
    changes_output: bool = False  # a finished output made with another value is stale (sidecar check)
    flags: tuple[str, ...] = ()  # CLI flags; default --name-with-dashes
    aliases: tuple[str, ...] = ()  # other manifest column names
    surfaces: frozenset[str] = EVERYWHERE  # where it can be set besides the Python API
    check: Callable[[Any], str | None] | None = None  # a further rule: the problem as a clause, or None


def option(default: Any, help: str, **spec: Any) -> Any:
    """A dataclass field with its spec."""
    return field(default=default, metadata={"spec": OptionSpec(help, **spec)})


class _Checked:
    """Validates every field against its spec when the object is made (and on ``dataclasses.replace``)."""

    def __post_init__(self) -> None:
        for option_field in dataclasses.fields(self):
            check_value(option_field.name, getattr(self, option_field.name))


@dataclass(frozen=True)
class SessionOptions(_Checked):
    """Options fixed when a Renderer loads: runtime, device, precision and the shape of the pipeline."""

    backend: str = option(
        "auto", "Inference runtime; auto picks the best one available and says which.", choices=BACKEND_CHOICES
    )
    device: str = option(
        "auto",
        "Device: auto, cpu, cuda[:N] or tensorrt[:N].",
        pattern=DEVICE_PATTERN,
        metavar="auto|cpu|cuda[:N]|tensorrt[:N]",
    )
    precision: str = option(
        "auto",
        "UNet precision. auto: on the CPU the fastest backend and precision within 45 dB of fp32 on the package's own "
        "frames (measured once, cached), fp32 on a GPU; fp32 is the bit-exact reference; fp16 needs a GPU; bf16 "
        "(OpenVINO) needs AMX or AVX-512 BF16; int8 is calibrated on the package.",
        choices=PRECISIONS,
        changes_output=True,
    )
    batch_size: int | None = option(
        None,
        "UNet batch size (default: 25 on a GPU, 1 on the CPU, 4 for int8).",
        minimum=1,
        maximum=256,
        flags=("--batch-size", "-b"),
        surfaces=frozenset({CLI, JOBS}),
    )
    workers: int | None = option(
        None,
        "Compositing processes, 0 = in this process (default: 0 on the CPU, up to 4 with a GPU).",
        minimum=0,
        maximum=32,
        flags=("--workers", "-w"),
    )
    threads: int = option(0, "Inference threads (0: all cores).", minimum=0, maximum=256)
    cuda_graph: bool = option(False, "CUDA: capture the UNet once and replay it.")
    unet_io: str = option(
        "auto",
        "UNet input and output. uint8: the 328 crop goes to the model, which takes the region, divides by 255, "
        "masks and returns the uint8 prediction (on a GPU all on the device, a quarter of the bytes); float: the host "
        "does that work; auto: uint8 on a GPU, float on the CPU. Both give the same frames, bit for bit.",
        choices=UNET_IO,
        label="UNet input/output",
    )
    codec: str = option(
        "h264",
        "Video codec: h264 (plays everywhere) or hevc (smaller files).",
        choices=VIDEO_CODECS,
        changes_output=True,
        label="Video codec",
    )
    video_encoder: str = option(
        "auto",
        "Video encoder: auto (NVENC when it really opens), software (libx264 or libx265) or nvenc.",
        choices=VIDEO_ENCODERS,
        changes_output=True,
        flags=("--video-encoder", "--encoder"),
        aliases=("encoder",),
    )
    size: str | None = option(
        None,
        "Scale the finished frames to WxH before encoding (both even, 16 to 4096); default: the package's size.",
        pattern=SIZE_PATTERN,
        metavar="WxH",
        changes_output=True,
        label="Output size",
        check=size_problem,
    )
    encoder_threads: int | None = option(
        None,
        "libx264 threads (default: 1 on the CPU, x264's choice with a GPU).",
        minimum=0,
        maximum=64,
        surfaces=frozenset(),
    )

    def resolve(self, device_kind: str) -> SessionOptions:
        """A copy with the automatic settings filled in for a device kind ('cpu', 'cuda', 'tensorrt').

        On the CPU the UNet's cost per frame is flat from batch 1 to 25 while its activations grow with the
        batch (7 GB peak at 25), and the other stages are light: one-frame batches and in-process compositing
        measured fastest there (benchmarks/RESULTS.md), and one x264 thread encodes 720p with about 30% less CPU
        time per frame than x264's own threading, leaving the cores to the UNet. A GPU wants large constant
        batches; the CPU stages then set the pace, so they get processes and x264 its threads.
        """
        import os

        on_cpu = device_kind == "cpu"
        cpu_batch = 4 if self.precision == "int8" else 1  # int8 kernels gain from batching (measured +20%)
        gpu_workers = min(4, max(1, (os.cpu_count() or 2) // 2))
        return dataclasses.replace(
            self,
            batch_size=self.batch_size or (cpu_batch if on_cpu else 25),
            workers=self.workers if self.workers is not None else (0 if on_cpu else gpu_workers),
            encoder_threads=self.encoder_threads if self.encoder_threads is not None else (1 if on_cpu else 0),
        )


@dataclass(frozen=True)
class RenderOptions(_Checked):
    """Options that may change from one render to the next with the same loaded Renderer."""

    start_frame: int = option(
        0,
        "Phase of the background loop, in frames.",
        minimum=0,
        maximum=MAX_START_FRAME,
        changes_output=True,
        surfaces=frozenset({CLI, JOBS}),
    )
    loop: str = option(
        "pingpong",
        "Background loop: pingpong (the reference's) or forward.",
        choices=("pingpong", "forward"),
        changes_output=True,
        surfaces=frozenset({CLI, JOBS}),
    )
    crf: int = option(18, "Video quality (lower is better).", minimum=0, maximum=51, changes_output=True, label="CRF")
    gop: float = option(
        2.0,
        "Seconds between keyframes (seeking is exact to one); 0 lets the encoder choose.",
        minimum=0,
        maximum=60,
        changes_output=True,
        label="GOP",
    )
    preset: str = option("veryfast", "x264/x265 speed preset.", choices=X264_PRESETS, changes_output=True)
    audio_bitrate: int = option(
        128,
        "AAC bitrate in kbit/s.",
        minimum=16,
        maximum=512,
        changes_output=True,
        metavar="KBPS",
        label="Audio bitrate",
    )
    features: str = option(
        "audio",
        "Audio features: from the audio, or the package's pre-extracted aud_ave.npy.",
        choices=("audio", "package"),
        changes_output=True,
    )
    blend: str = option(
        "hard",
        f"Seam of the model region: hard (the reference's paste) or feather[:PX], a PX-pixel ramp into the crop "
        f"(default {FEATHER_PIXELS}, {FEATHER_RANGE[0]}-{FEATHER_RANGE[1]}); pixels outside the face rectangle "
        "never change.",
        pattern=BLEND_PATTERN,
        metavar="hard|feather[:PX]",
        changes_output=True,
        check=feather_problem,
    )
    silence: str = option(
        "keep",
        "keep: the UNet renders every frame (the reference); idle: the untouched package frame where the audio is "
        "silent (cross-faded at the edges, no UNet run for it).",
        choices=("keep", "idle"),
        changes_output=True,
    )
    frames_dir: Path | None = option(None, "Also write the composited frames here.", surfaces=frozenset({CLI}))
    frames_format: str = option(
        "jpg",
        "Image format of --frames-dir: jpg (quality 75) or png.",
        choices=("jpg", "png"),
        surfaces=frozenset({CLI}),
    )
    jpeg_quality: int = option(75, "JPEG quality of --frames-dir images.", minimum=1, maximum=100, surfaces=frozenset())


OPTION_CLASSES = (SessionOptions, RenderOptions)


@dataclass(frozen=True)
class Option:
    """One option as the derived surfaces see it."""

    name: str
    kind: type  # int, str, bool or Path (None is allowed where the default is None)
    default: Any
    spec: OptionSpec
    scope: type  # SessionOptions or RenderOptions

    @property
    def flags(self) -> tuple[str, ...]:
        return self.spec.flags or ("--" + self.name.replace("_", "-"),)

    @property
    def columns(self) -> tuple[str, ...]:
        """Manifest column names: the option's own, then its aliases."""
        return (self.name, *self.spec.aliases)


def _options() -> dict[str, Option]:
    found = {}
    for scope in OPTION_CLASSES:
        hints = typing.get_type_hints(scope)
        for option_field in dataclasses.fields(scope):
            kind = next(
                t
                for t in typing.get_args(hints[option_field.name]) or (hints[option_field.name],)
                if t is not type(None)
            )
            found[option_field.name] = Option(
                option_field.name, kind, option_field.default, option_field.metadata["spec"], scope
            )
    return found


OPTIONS: dict[str, Option] = _options()
OUTPUT_OPTIONS = tuple(name for name, o in OPTIONS.items() if o.spec.changes_output)


def options_for(surface: str) -> list[Option]:
    """The options settable on a surface (CLI, JOBS or BENCH), in definition order."""
    return [o for o in OPTIONS.values() if surface in o.spec.surfaces]


def check_value(name: str, value: Any) -> None:
    """Raise OptionError unless ``value`` is allowed for option ``name``."""
    o = OPTIONS[name]
    label = o.spec.label or name.replace("_", " ").capitalize()
    if value is None:
        if o.default is not None:
            raise OptionError(f"{label} needs a value.")
        return
    if o.kind is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise OptionError(f"{label} must be a whole number (got {value!r}).")
    if o.kind is float and (isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value)):
        raise OptionError(f"{label} must be a number (got {value!r}).")
    if o.kind not in (int, float) and not isinstance(value, o.kind):
        raise OptionError(f"{label} must be {o.kind.__name__} (got {value!r}).")
    spec = o.spec
    if spec.choices is not None and value not in spec.choices:
        raise OptionError(f"{label} must be one of {', '.join(spec.choices)} (got '{value}').")
    if spec.pattern is not None and not re.fullmatch(spec.pattern, value, re.IGNORECASE):
        raise OptionError(f"Unknown {label.lower()} '{value}': use {spec.metavar or spec.pattern}.")
    if (spec.minimum is not None and value < spec.minimum) or (spec.maximum is not None and value > spec.maximum):
        bounds = f"at least {spec.minimum}" + ("" if spec.maximum is None else f" and at most {spec.maximum}")
        raise OptionError(f"{label} must be {bounds} (got {value}).")
    if spec.check is not None and (problem := spec.check(value)):
        raise OptionError(f"{label} {problem} (got '{value}').")


TRUE_WORDS, FALSE_WORDS = ("1", "true", "yes"), ("0", "false", "no")


def parse_value(name: str, value: Any) -> Any:
    """A manifest cell (text, or a JSON value) as option ``name``'s type; OptionError when it is not one."""
    o = OPTIONS[name]
    text = str(value).strip()
    if o.kind is bool and not isinstance(value, bool):
        if text.lower() not in TRUE_WORDS + FALSE_WORDS:
            raise OptionError(f"{name} must be true or false (got '{text}').")
        return text.lower() in TRUE_WORDS
    if o.kind is int and not isinstance(value, bool) and re.fullmatch(r"[+-]?\d{1,18}", text):
        return int(text)
    if o.kind is int:
        raise OptionError(f"{name} must be a whole number (got '{text}').")
    if o.kind is float and not isinstance(value, bool):
        try:
            return float(text)
        except ValueError:
            raise OptionError(f"{name} must be a number (got '{text}').") from None
    if o.kind is Path:
        return Path(text)
    return value if isinstance(value, bool) else text


def split_options(values: dict[str, Any]) -> tuple[SessionOptions, RenderOptions]:
    """Session and render options from one flat mapping of option names (unknown names are an OptionError)."""
    unknown = [name for name in values if name not in OPTIONS]
    if unknown:
        raise OptionError(f"Unknown option '{unknown[0]}' (known: {', '.join(OPTIONS)}).")
    by_scope = {scope: {k: v for k, v in values.items() if OPTIONS[k].scope is scope} for scope in OPTION_CLASSES}
    return SessionOptions(**by_scope[SessionOptions]), RenderOptions(**by_scope[RenderOptions])


def output_affecting(session: SessionOptions, render: RenderOptions) -> dict[str, Any]:
    """The values of the options that change what an output holds, for the sidecar."""
    merged = {**dataclasses.asdict(session), **dataclasses.asdict(render)}
    return {name: merged[name] for name in OUTPUT_OPTIONS}
