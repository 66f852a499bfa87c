"""MP4 writing: encoders, colour tags, HEVC tagging, audio bitrate; decoded back with PyAV."""

import av
import numpy as np
import pytest
import soundfile as sf

from lipsync_render.errors import DeviceError
from lipsync_render.media.colour import BT709Converter, decode_bgr
from lipsync_render.media.video import VideoTarget, VideoWriter, encoder_opens, probe, select_video_encoder
from lipsync_render.options import RenderOptions

SKIN = (149, 174, 214)


def write(path, codec="libx264", frames=10, size=(128, 96), audio=None, options=RenderOptions(crf=0)):
    converter = BT709Converter(*size)
    frame = np.zeros((size[1], size[0], 3), np.uint8)
    frame[:, : size[0] // 2] = SKIN
    frame[:, size[0] // 2 :] = (40, 90, 30)
    settings = {name: getattr(options, name) for name in ("crf", "gop", "preset", "audio_bitrate")}
    writer = VideoWriter(VideoTarget(path, *size, audio_path=audio, encoder=codec, **settings))
    for _ in range(frames):
        writer.write_i420(converter.convert(frame))
    writer.close()
    return frame


@pytest.mark.parametrize("codec", ["libx264", "libx265"])
def test_streams_are_tagged_bt709_and_decode_to_the_source_colours(tmp_path, codec):
    path = tmp_path / "out.mp4"
    source = write(path, codec)
    with av.open(str(path)) as container:
        context = container.streams.video[0].codec_context
        assert (context.color_primaries, context.color_trc, context.colorspace, context.color_range) == (1, 1, 1, 1)
        decoded = decode_bgr(next(container.decode(video=0)))
    inside = np.s_[8:-8, 8:56], np.s_[8:-8, 72:-8]  # away from the colour edge, where chroma is shared
    for region in inside:
        assert np.abs(decoded[region].astype(int) - source[region]).max() <= 2


def test_hevc_is_tagged_hvc1_for_apple_players(tmp_path):
    path = tmp_path / "out.mp4"
    write(path, "libx265")
    with av.open(str(path)) as container:
        assert container.streams.video[0].codec_tag == "hvc1"
    assert probe(path).video_codec == "hevc"


def test_audio_bitrate_is_what_was_asked(tmp_path, short_wav):
    sizes = {}
    for kbps in (32, 192):
        path = tmp_path / f"{kbps}.mp4"
        write(path, frames=30, audio=short_wav, options=RenderOptions(audio_bitrate=kbps))
        with av.open(str(path)) as container:
            sizes[kbps] = sum(p.size for p in container.demux(audio=0))
    assert sizes[192] > 2 * sizes[32]


def test_any_audio_input_is_muxed(tmp_path):
    rate = 44100
    tone = 0.3 * np.sin(2 * np.pi * 440 * np.arange(rate) / rate)
    audio = tmp_path / "tone.flac"
    sf.write(audio, np.stack([tone, tone], axis=1), rate)
    path = tmp_path / "out.mp4"
    write(path, frames=25, audio=audio)
    info = probe(path)
    assert info.audio_codec == "aac" and info.audio_rate == rate
    assert abs(info.audio_duration - 1.0) < 0.05


def test_encoder_selection():
    assert select_video_encoder("h264", "software") == "libx264"
    assert select_video_encoder("hevc", "software") == "libx265"
    for codec, nvenc, software in (("h264", "h264_nvenc", "libx264"), ("hevc", "hevc_nvenc", "libx265")):
        expected = nvenc if encoder_opens(nvenc) else software
        assert select_video_encoder(codec, "auto") == expected
        if expected == software:
            with pytest.raises(DeviceError, match=f"{nvenc} encoder cannot be opened"):
                select_video_encoder(codec, "nvenc")
    with pytest.raises(DeviceError, match="Unknown video encoder"):
        select_video_encoder("h264", "libx264")
