"""What a render reports: the result of one file, with the busy seconds of each stage."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

STAGES = ("audio", "prepare", "inference", "compositing", "encoding")


@dataclass
class RenderResult:
    """What one render produced; ``--json`` prints it as one object per file."""

    input: str
    output: str | None
    status: str = "ok"
    error: str | None = None
    frames: int = 0
    duration: float = 0.0
    fps: float = 0.0
    first_frame_seconds: float = 0.0  # from the render call to the first encoded frame
    seconds: dict[str, float] = field(default_factory=dict)  # busy seconds per stage, and "total" wall seconds
    # CPU seconds of each pipeline thread of this process (features, prepare, inference, dispatch, send, collect)
    cpu_seconds: dict[str, float] = field(default_factory=dict)
    backend: str = ""  # the inference runtime used
    precision: str = ""  # the UNet precision used (what --precision auto chose)
    precision_choice: str | None = None  # with --precision auto: the choice and its PSNR and speed
    video_encoder: str = ""  # the FFmpeg encoder that wrote the file (libx264, libx265, h264_nvenc, hevc_nvenc)
    providers: list[str] = field(default_factory=list)  # what it really ran on
    idle_frames: int = 0  # frames shown as the untouched package frame (--silence idle), no UNet run for them
    plan: dict = field(default_factory=dict)  # the session plan the render ran with (SessionPlan.to_dict)

    def to_dict(self) -> dict:
        return asdict(self)
