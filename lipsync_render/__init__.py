"""lipsync-render: offline, fast rendering of SyncTalk_2D-style lip-synced talking-head videos."""

__version__ = "0.1.0"

from lipsync_render.errors import AudioError, DeviceError, LipsyncError, PackageError, RenderError

__all__ = ["AudioError", "DeviceError", "LipsyncError", "PackageError", "RenderError", "__version__"]
