"""Every render option, defined once: type, allowed values, default, help, scope and effect on the output.

Options live in two dataclasses by scope. ``SessionOptions`` are fixed when a :class:`Renderer` loads its models,
compositing pool and video encoder; ``RenderOptions`` may change from one render to the next and are passed to
``Renderer.render``. Each field carries an :class:`OptionSpec` (``option_schema``); the CLI flags, the
``render-many`` manifest columns, bench's flags, the sidecar's output-affecting set and validation are all derived
from these specs, so a new option is one field here. Values are checked when an options object is made
(OptionError, exit 2), before anything loads. What ``auto`` becomes on a machine is the session plan's business
(``planning.session_plan``), never this module's.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lipsync_render.errors import OptionError
from lipsync_render.option_schema import (
    BENCH,
    CLI,
    EVERYWHERE,
    JOBS,
    Checked,
    Option,
    OptionSpec,
    check,
    declared_options,
    option,
    parse,
)
from lipsync_render.option_values import (
    BLEND_PATTERN,
    FEATHER_PIXELS,
    FEATHER_RANGE,
    SIZE_PATTERN,
    feather_problem,
    size_problem,
)

BACKEND_NAMES = ("onnxruntime", "openvino", "torch")  # most preferred first; runtimes.registry maps each to a module
BACKEND_CHOICES = ("auto", *BACKEND_NAMES)
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
__all__ = [
    "BENCH",
    "CLI",
    "EVERYWHERE",
    "JOBS",
    "OPTIONS",
    "OUTPUT_OPTIONS",
    "Option",
    "OptionSpec",
    "RenderOptions",
    "SessionOptions",
    "check_value",
    "options_for",
    "output_affecting",
    "parse_value",
    "split_options",
]


@dataclass(frozen=True)
class SessionOptions(Checked):
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


@dataclass(frozen=True)
class RenderOptions(Checked):
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
    colour_match: str = option(
        "off",
        "off: the prediction's colours as the model made them (the reference); auto: correct a colour cast of the "
        "model, per channel, fitted on the model region outside the mouth against the original crop, limited and "
        "smoothed over time; pixels outside the face rectangle never change.",
        choices=("off", "auto"),
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
OPTIONS: dict[str, Option] = {name: o for scope in OPTION_CLASSES for name, o in declared_options(scope).items()}
OUTPUT_OPTIONS = tuple(name for name, o in OPTIONS.items() if o.spec.changes_output)


def options_for(surface: str) -> list[Option]:
    """The options settable on a surface (CLI, JOBS or BENCH), in definition order."""
    return [o for o in OPTIONS.values() if surface in o.spec.surfaces]


def check_value(name: str, value: Any) -> None:
    """Raise OptionError unless ``value`` is allowed for option ``name``."""
    check(OPTIONS[name], value)


def parse_value(name: str, value: Any) -> Any:
    """A manifest cell (text, or a JSON value) as option ``name``'s type; OptionError when it is not one."""
    return parse(OPTIONS[name], value)


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
