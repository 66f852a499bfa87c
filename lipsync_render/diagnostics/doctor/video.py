"""The doctor's video section: PyAV's FFmpeg, and which encoders really open with the writer's options."""

from __future__ import annotations

from lipsync_render.diagnostics.doctor.check import Check


def check_pyav() -> Check:
    import av

    versions = getattr(av, "library_versions", {})
    codec = versions.get("libavcodec")
    ffmpeg = f", libavcodec {'.'.join(map(str, codec))}" if codec else ""
    return Check("pyav / ffmpeg", "ok", f"PyAV {av.__version__}{ffmpeg}")


def check_encoder(codec: str, driver: bool) -> Check:
    from lipsync_render.media.video import PROBE_SIZE, SOFTWARE_ENCODERS, encoder_opens, software_encoder

    name = f"encoder {codec}"
    if encoder_opens(codec):
        return Check(name, "ok", f"opens a {PROBE_SIZE[0]}x{PROBE_SIZE[1]} yuv420p stream with the writer's options")
    if codec in SOFTWARE_ENCODERS:
        default = codec == "libx264"
        return Check(
            name,
            "fail" if default else "warn",
            f"FFmpeg cannot open {codec}: " + ("no MP4 can be written" if default else "--codec hevc cannot run"),
            f"use the PyPI wheels of PyAV, which bundle {codec}: pip install --force-reinstall av",
        )
    fallback = software_encoder(codec)
    if not driver:
        return Check(
            name, "warn", f"cannot open without an NVIDIA GPU; {fallback} is used", "nothing to do on a CPU machine"
        )
    return Check(
        name,
        "warn",
        "cannot open although a driver is present (a GPU without NVENC, or its sessions "
        f"are all in use); {fallback} is used",
        "optional: --video-encoder software is the default fallback",
    )
