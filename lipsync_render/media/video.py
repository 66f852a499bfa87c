"""MP4 output with PyAV: H.264 (or HEVC) yuv420p video tagged BT.709, AAC audio from the input file, interleaved,
faststart."""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from lipsync_render.media.audio_source import AudioSource
from lipsync_render.media.colour import COLOUR_TAGS, decode_bgr
from lipsync_render.options import RenderOptions

AAC_RATES = (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000, 64000, 88200, 96000)
FALLBACK_AUDIO_RATE = 48000
AUDIO_BLOCK = 4096

# (--codec, --video-encoder) -> FFmpeg encoder
ENCODERS = {
    ("h264", "software"): "libx264",
    ("h264", "nvenc"): "h264_nvenc",
    ("hevc", "software"): "libx265",
    ("hevc", "nvenc"): "hevc_nvenc",
}
SOFTWARE_ENCODERS = {ENCODERS[codec, "software"] for codec in ("h264", "hevc")}
MP4_CODEC_TAGS = {"libx265": "hvc1", "hevc_nvenc": "hvc1"}  # what Apple's players and Safari require for HEVC


def software_encoder(encoder: str) -> str:
    """The CPU encoder of the same codec as ``encoder``."""
    codec = next(codec for (codec, _), name in ENCODERS.items() if name == encoder)
    return ENCODERS[codec, "software"]


def encoder_options(
    encoder: str,
    crf: int = RenderOptions.crf,
    preset: str = RenderOptions.preset,
    gop: float = RenderOptions.gop,
    threads: int = 0,
    fps: int = 25,
) -> dict[str, str]:
    """FFmpeg options for an encoder: x264's or x265's CRF and preset, or NVENC's constant quality, and the keyframe
    interval (``gop`` seconds) of each."""
    keyframes = {"g": str(max(1, round(gop * fps)))} if gop else {}
    if encoder == "libx264":
        return {"crf": str(crf), "preset": preset, **keyframes, **({"threads": str(threads)} if threads else {})}
    if encoder == "libx265":
        params = "log-level=error" + (f":pools={threads}:frame-threads={min(threads, 2)}" if threads else "")
        return {"crf": str(crf), "preset": preset, "x265-params": params, **keyframes}
    return {"preset": "p4", "cq": str(crf), **keyframes}


PROBE_SIZE = (1280, 720)


def encoder_opens(encoder: str, width: int = PROBE_SIZE[0], height: int = PROBE_SIZE[1]) -> bool:
    """Whether FFmpeg can really open this encoder here at this size, with the options the writer uses (NVENC
    needs a GPU and driver, and a free session; old drivers refuse large frames)."""
    try:
        context = av.CodecContext.create(encoder, "w")
        context.width, context.height, context.pix_fmt = width, height, "yuv420p"
        context.time_base = Fraction(1, 25)
        context.options = encoder_options(encoder)
        context.open()
        return True
    except (av.FFmpegError, ValueError, OSError):
        return False


def select_video_encoder(
    codec: str = "h264", kind: str = "auto", width: int = PROBE_SIZE[0], height: int = PROBE_SIZE[1]
) -> str:
    """The FFmpeg encoder for a codec and an encoder kind (auto, software or nvenc) at a frame size; an encoder
    asked for that cannot open is an error, ``auto`` takes NVENC only when it really opens."""
    from lipsync_render.errors import DeviceError

    if kind == "auto":
        nvenc = ENCODERS[codec, "nvenc"]
        return nvenc if encoder_opens(nvenc, width, height) else ENCODERS[codec, "software"]
    if (codec, kind) not in ENCODERS:
        raise DeviceError(f"Unknown video encoder '{kind}' for {codec}: use auto, software or nvenc.")
    name = ENCODERS[codec, kind]
    if not encoder_opens(name, width, height):
        reason = "no NVIDIA GPU or driver?" if kind == "nvenc" else "this FFmpeg build lacks it"
        raise DeviceError(f"The {name} encoder cannot be opened on this machine ({reason}).")
    return name


class AudioTrack:
    """The input file's audio, read in blocks at an AAC-compatible rate (its own, else 48 kHz), mono or stereo."""

    def __init__(self, path: Path, frames: int | None = None):
        self.source = AudioSource(path, frames)
        self.source_rate = self.source.rate
        self.channels = 2 if self.source.channels == 2 else 1
        self.rate = self.source_rate if self.source_rate in AAC_RATES else FALLBACK_AUDIO_RATE
        self.resampler = None
        if self.rate != self.source_rate:
            import soxr

            self.resampler = soxr.ResampleStream(
                self.source_rate, self.rate, self.channels, dtype="float32", quality="HQ"
            )
        self.total = int(round(self.source.frames * self.rate / self.source_rate))
        self.blocks = self.source.blocks(AUDIO_BLOCK)
        self.read_frames = 0

    def read(self) -> np.ndarray | None:
        """The next block as (channels, n) float32 at the output rate; None after the last."""
        block = next(self.blocks, None)
        if block is None:
            return None
        self.read_frames += len(block)
        if block.shape[1] != self.channels:
            block = block.mean(axis=1, keepdims=True, dtype=np.float32)
        if self.resampler is not None:
            block = self.resampler.resample_chunk(block, last=self.read_frames >= self.source.frames)
        return np.ascontiguousarray(block.T)

    def close(self) -> None:
        self.blocks.close()


@dataclass(frozen=True)
class VideoTarget:
    """The file to write, the stream it holds and its quality settings (defaults: the render options' own)."""

    path: Path
    width: int
    height: int
    fps: int = 25
    audio_path: Path | None = None  # muxed as AAC; None writes video only
    encoder: str = "libx264"  # an FFmpeg encoder name (select_video_encoder)
    threads: int = 0  # x264/x265 threads, 0: the encoder's own choice
    audio_frames: int | None = None  # the audio file's length in samples, when already counted
    fallback_encoder: str | None = None  # what to open instead when ``encoder`` fails to open (NVENC chosen by auto)
    crf: int = RenderOptions.crf
    gop: float = RenderOptions.gop  # seconds between keyframes, 0: the encoder's choice
    preset: str = RenderOptions.preset
    audio_bitrate: int = RenderOptions.audio_bitrate  # kbit/s


class VideoWriter:
    """Writes I420 frames at a constant rate and muxes the input file's audio alongside, interleaved."""

    def __init__(self, target: VideoTarget):
        self.path = Path(target.path)
        self.fps = target.fps
        self.width, self.height = target.width, target.height
        self.container = av.open(str(self.path), mode="w", format="mp4", options={"movflags": "+faststart"})
        try:
            self.video = self.container.add_stream(target.encoder, rate=target.fps)
            self.video.width, self.video.height, self.video.pix_fmt = target.width, target.height, "yuv420p"
            self.video.codec_context.time_base = Fraction(1, target.fps)
            for tag, value in COLOUR_TAGS.items():
                setattr(self.video.codec_context, tag, value)
            if target.encoder in MP4_CODEC_TAGS:
                self.video.codec_tag = MP4_CODEC_TAGS[target.encoder]
            self.video.options = encoder_options(
                target.encoder, target.crf, target.preset, target.gop, target.threads, target.fps
            )
            self.video.codec_context.open()  # now, so an encoder that cannot open fails here, not at frame one
        except BaseException:
            self.container.close()
            raise
        self.frames_written = 0
        self.audio_written = 0
        self.audio_track = None
        if target.audio_path is not None:
            try:
                self.audio_track = AudioTrack(target.audio_path, target.audio_frames)
                layout = "stereo" if self.audio_track.channels == 2 else "mono"
                self.audio = self.container.add_stream("aac", rate=self.audio_track.rate, layout=layout)
                self.audio.time_base = Fraction(1, self.audio_track.rate)
                self.audio.bit_rate = target.audio_bitrate * 1000
            except BaseException:
                self.abort()
                raise

    def write_i420(self, planes: np.ndarray) -> None:
        """Encode one frame given as an (H*3/2, W) uint8 I420 buffer."""
        frame = av.VideoFrame.from_numpy_buffer(planes, format="yuv420p")
        frame.colorspace, frame.color_range = COLOUR_TAGS["colorspace"], COLOUR_TAGS["color_range"]
        frame.pts = self.frames_written
        self.container.mux(self.video.encode(frame))
        self.frames_written += 1
        self._write_audio_until(self.frames_written / self.fps)

    def _write_audio_until(self, seconds: float | None) -> None:
        track = self.audio_track
        if track is None:
            return
        target = track.total if seconds is None else min(track.total, int(seconds * track.rate))
        while self.audio_written < target:
            samples = track.read()
            if samples is None:
                break
            if samples.shape[1] == 0:
                continue
            frame = av.AudioFrame.from_ndarray(samples, format="fltp", layout=self.audio.layout.name)
            frame.sample_rate = track.rate
            frame.pts = self.audio_written
            self.container.mux(self.audio.encode(frame))
            self.audio_written += samples.shape[1]

    def close(self) -> None:
        """Flush both encoders and finish the file (faststart moves the index to the front)."""
        self.container.mux(self.video.encode(None))
        if self.audio_track is not None:
            self._write_audio_until(None)
            self.container.mux(self.audio.encode(None))
            self.audio_track.close()
        self.container.close()

    def abort(self) -> None:
        """Close without flushing; the caller deletes the partial file."""
        try:
            if self.audio_track is not None:
                self.audio_track.close()
            self.container.close()
        except Exception:  # the file is discarded anyway
            pass


@dataclass
class MediaInfo:
    """What a finished MP4 holds, as decoded by PyAV."""

    video_codec: str
    pix_fmt: str
    width: int
    height: int
    fps: float
    frames: int
    video_duration: float
    audio_codec: str | None
    audio_rate: int | None
    audio_duration: float | None


def probe(path: Path, count_frames: bool = True) -> MediaInfo:
    """Inspect an MP4: codecs, size, rate, frame count (decoded) and both stream durations."""
    with av.open(str(path)) as container:
        video = container.streams.video[0]
        audio = container.streams.audio[0] if container.streams.audio else None
        frames = video.frames
        if count_frames:
            frames = sum(1 for _ in container.decode(video=0))
        fps = float(video.average_rate or video.base_rate)
        video_duration = float(video.duration * video.time_base) if video.duration else frames / fps
        audio_duration = float(audio.duration * audio.time_base) if audio is not None and audio.duration else None
        return MediaInfo(
            video_codec=video.codec_context.name,
            pix_fmt=video.codec_context.pix_fmt or "",
            width=video.codec_context.width,
            height=video.codec_context.height,
            fps=fps,
            frames=frames,
            video_duration=video_duration,
            audio_codec=audio.codec_context.name if audio is not None else None,
            audio_rate=audio.codec_context.sample_rate if audio is not None else None,
            audio_duration=audio_duration,
        )


def read_frames_bgr(path: Path):
    """Decoded frames of a video as BGR uint8 arrays as a player shows them (colour tags honoured), lazily."""
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            yield decode_bgr(frame)
