"""What one render runs on: the loaded models and helper processes a Renderer owns, frozen for the render."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lipsync_render.package import Package
    from lipsync_render.rendering.compositing_pool import CompositingPool
    from lipsync_render.rendering.encoding_process import VideoEncoderProcess
    from lipsync_render.runtimes import LoadedModel


@dataclass(frozen=True)
class RenderResources:
    """The Renderer's loaded state as a render sees it: read, never replaced (the Renderer restarts what breaks)."""

    package: Package
    unet: LoadedModel
    audio_encoder: LoadedModel
    pool: CompositingPool  # compositing workers and the shared-memory ring of frame slots
    encoder_process: VideoEncoderProcess  # the video encoder process, reading finished frames from the ring
    slots: int  # frame slots in the ring
