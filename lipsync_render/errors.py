"""One exception family for problems a user can fix; the CLI prints the message and exits non-zero."""


class LipsyncError(Exception):
    """A user-facing problem, described in one sentence."""

    exit_code = 1


class OptionError(LipsyncError):
    """An option value that cannot work (batch size 0, unknown loop mode, ...)."""

    exit_code = 2


class AudioError(LipsyncError):
    """The audio input cannot be used."""

    exit_code = 3


class PackageError(LipsyncError):
    """A model package is missing, malformed or inconsistent."""

    exit_code = 4


class DeviceError(LipsyncError):
    """The requested execution device is not really available."""

    exit_code = 5


class RenderError(LipsyncError):
    """Rendering failed (a worker died, output not writable, ...)."""

    exit_code = 6
