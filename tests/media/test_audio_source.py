"""Decoding through FFmpeg: every common format and a video file's audio track, exact for PCM, quiet, one-sentence
errors."""

import subprocess
import sys

import av
import numpy as np
import pytest
import soundfile as sf

from lipsync_render.errors import AudioError
from lipsync_render.media.audio import SAMPLE_RATE, load_audio
from lipsync_render.media.audio_source import AudioSource

FREQ = 440.0


def tone(rate, seconds=1.0, channels=1):
    t = np.arange(int(rate * seconds)) / rate
    return np.tile(0.4 * np.sin(2 * np.pi * FREQ * t), (channels, 1)).astype(np.float32)


def encode(path, container_format, codec, rate, channels=1, video=False):
    """A file written by FFmpeg's own encoders (through PyAV): compressed audio, optionally beside a video track."""
    with av.open(str(path), "w", format=container_format) as container:
        if video:
            picture = container.add_stream("libx264", rate=25)
            picture.width, picture.height, picture.pix_fmt = 64, 64, "yuv420p"
        stream = container.add_stream(codec, rate=rate, layout="mono" if channels == 1 else "stereo")
        frame = av.AudioFrame.from_ndarray(tone(rate, channels=channels), format="fltp", layout=stream.layout.name)
        frame.sample_rate = rate
        resampler = av.AudioResampler(format=stream.format.name, layout=stream.layout.name, rate=rate)
        for part in resampler.resample(frame):
            container.mux(stream.encode(part))
        container.mux(stream.encode(None))
        if video:
            for index in range(25):
                image = av.VideoFrame.from_ndarray(np.full((64, 64, 3), index, np.uint8), format="rgb24")
                image.pts = index
                container.mux(picture.encode(image))
            container.mux(picture.encode(None))
    return path


def sine_fit_amplitude(samples, rate=SAMPLE_RATE, margin=2000):
    y = samples[margin:-margin].astype(np.float64)
    t = (np.arange(len(y)) + margin) / rate
    basis = np.stack([np.sin(2 * np.pi * FREQ * t), np.cos(2 * np.pi * FREQ * t)], axis=1)
    coef, *_ = np.linalg.lstsq(basis, y, rcond=None)
    return float(np.hypot(*coef))


COMPRESSED = {
    "mp3": ("mp3", "libmp3lame", 44100, 2),
    "m4a": ("mp4", "aac", 48000, 2),
    "opus": ("ogg", "libopus", 48000, 1),
    "flac": ("flac", "flac", 22050, 1),
}


@pytest.mark.parametrize("suffix", list(COMPRESSED))
def test_compressed_formats_decode_to_the_tone(tmp_path, suffix):
    container_format, codec, rate, channels = COMPRESSED[suffix]
    path = encode(tmp_path / f"tone.{suffix}", container_format, codec, rate, channels)
    samples = load_audio(path)
    assert abs(len(samples) / SAMPLE_RATE - 1.0) < 0.1  # encoder priming and padding add a few ms
    assert abs(sine_fit_amplitude(samples) - 0.4) < 0.02


def test_ogg_vorbis_from_libsndfile(tmp_path):
    path = tmp_path / "tone.ogg"
    sf.write(path, tone(SAMPLE_RATE)[0], SAMPLE_RATE, format="OGG", subtype="VORBIS")
    assert abs(sine_fit_amplitude(load_audio(path)) - 0.4) < 0.02


def test_the_audio_track_of_a_video_file(tmp_path):
    path = encode(tmp_path / "clip.mp4", "mp4", "aac", 44100, 2, video=True)
    assert abs(sine_fit_amplitude(load_audio(path)) - 0.4) < 0.02


def test_a_video_without_audio_is_one_sentence(tmp_path):
    path = tmp_path / "silent.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
        for index in range(5):
            image = av.VideoFrame.from_ndarray(np.zeros((64, 64, 3), np.uint8), format="rgb24")
            image.pts = index
            container.mux(stream.encode(image))
        container.mux(stream.encode(None))
    with pytest.raises(AudioError, match=r"has no audio stream\.$") as info:
        AudioSource(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("subtype", ["PCM_U8", "PCM_16", "PCM_24", "PCM_32", "FLOAT", "DOUBLE"])
def test_pcm_samples_are_exactly_libsndfiles(tmp_path, subtype):
    data = np.random.default_rng(0).uniform(-0.9, 0.9, (5000, 2))
    path = tmp_path / f"noise_{subtype}.wav"
    sf.write(path, data, 22050, subtype=subtype)
    expected, _ = sf.read(path, dtype="float32", always_2d=True)
    source = AudioSource(path)
    assert (source.rate, source.channels, source.frames) == (22050, 2, 5000)
    got = np.concatenate(list(source.blocks(block_frames=1000)))
    assert got.dtype == np.float32 and np.array_equal(got, expected)


def test_decoding_is_quiet(tmp_path):
    """A damaged MP3 still decodes, and FFmpeg's complaints never reach the terminal."""
    path = encode(tmp_path / "tone.mp3", "mp3", "libmp3lame", 44100)
    data = bytearray(path.read_bytes())
    for offset in range(3000, len(data) - 100, 1500):
        data[offset : offset + 40] = bytes(40)
    path.write_bytes(bytes(data))
    code = f"from lipsync_render.media.audio import load_audio; print(len(load_audio({str(path)!r})) > 0)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.stdout.strip() == "True" and result.stderr == ""


def test_a_file_that_changes_while_it_is_read(tmp_path):
    path = tmp_path / "tone.wav"
    sf.write(path, tone(SAMPLE_RATE)[0], SAMPLE_RATE)
    source = AudioSource(path)
    sf.write(path, tone(SAMPLE_RATE, seconds=0.5)[0], SAMPLE_RATE)
    with pytest.raises(AudioError, match="changed while it was being read"):
        list(source.blocks())
