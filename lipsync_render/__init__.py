"""lipsync-render: offline, fast rendering of SyncTalk_2D-style lip-synced talking-head videos."""

__version__ = "0.1.0"

from lipsync_render.errors import AudioError, DeviceError, LipsyncError, OptionError, PackageError, RenderError


def __getattr__(name: str):
    """Import the pipeline lazily, so `lipsync --help` and the errors stay cheap to import."""
    if name in ("Renderer", "RenderOptions", "RenderResult", "render"):
        from lipsync_render import pipeline

        return getattr(pipeline, name)
    raise AttributeError(name)


__all__ = ["AudioError", "DeviceError", "LipsyncError", "OptionError", "PackageError", "RenderError", "RenderOptions",
           "RenderResult", "Renderer", "__version__", "render"]
