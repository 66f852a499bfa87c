"""lipsync-render: offline, fast rendering of SyncTalk_2D-style lip-synced talking-head videos."""

__version__ = "0.1.0"

from lipsync_render.errors import AudioError, DeviceError, LipsyncError, OptionError, PackageError, RenderError
from lipsync_render.options import RenderOptions, SessionOptions

_LAZY = {
    "Renderer": "lipsync_render.rendering.renderer",
    "render": "lipsync_render.rendering.renderer",
    "RenderResult": "lipsync_render.rendering.result",
}


def __getattr__(name: str):
    """Import the render core lazily, so `lipsync --help` and the errors stay cheap to import."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(name)


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
