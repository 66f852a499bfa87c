"""lipsync-render: offline, fast rendering of SyncTalk_2D-style lip-synced talking-head videos."""

__version__ = "0.1.0"

from lipsync_render.errors import AudioError, DeviceError, LipsyncError, OptionError, PackageError, RenderError
from lipsync_render.lazy_imports import lazy_attributes
from lipsync_render.options import RenderOptions, SessionOptions

# The render core is imported when first used, so `lipsync --help` and the errors stay cheap to import.
__getattr__ = lazy_attributes(
    {
        "Renderer": "lipsync_render.rendering.renderer",
        "render": "lipsync_render.rendering.renderer",
        "RenderResult": "lipsync_render.rendering.result",
    }
)

__all__ = [
    "AudioError",
    "DeviceError",
    "LipsyncError",
    "OptionError",
    "PackageError",
    "RenderError",
    "RenderOptions",
    "RenderResult",
    "Renderer",
    "SessionOptions",
    "__version__",
    "render",
]
