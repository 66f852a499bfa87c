import math
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from lipsync_render.errors import AudioError
from lipsync_render.media import audio
from lipsync_render.media.audio import SAMPLE_RATE, AudioStream, load_audio
from lipsync_render.media.features import encoder_window_count
from lipsync_render.media.mel import melspectrogram


@pytest.fixture
def golden(golden_path):
    return golden_path


# --- load_audio ------------------------------------------------------------------------------------------


def sine(rate, seconds=0.5, freq=440.0, amplitude=0.5):
    t = np.arange(int(rate * seconds)) / rate
    return amplitude * np.sin(2 * np.pi * freq * t)


def fit_sine(samples, freq=440.0, rate=SAMPLE_RATE, margin=400):
    """Amplitude and residual RMS of a least-squares fit of a ``freq`` sinusoid, ignoring the edges."""
    y = samples[margin:-margin].astype(np.float64)
    t = (np.arange(len(y)) + margin) / rate
    basis = np.stack([np.sin(2 * np.pi * freq * t), np.cos(2 * np.pi * freq * t)], axis=1)
    coef, *_ = np.linalg.lstsq(basis, y, rcond=None)
    residual = y - basis @ coef
    return float(np.hypot(*coef)), float(np.sqrt(np.mean(residual**2)))


# (amplitude, residual RMS) tolerances: quantisation noise of the subtype (libsndfile truncates to 8 bits).
SUBTYPE_TOLERANCE = {
    "PCM_U8": (2e-3, 8e-3),
    "PCM_16": (1e-4, 1e-4),
    "PCM_24": (1e-5, 1e-5),
    "PCM_32": (1e-5, 1e-5),
    "FLOAT": (1e-5, 1e-5),
}


@pytest.mark.parametrize("subtype", list(SUBTYPE_TOLERANCE))
@pytest.mark.parametrize("rate, channels", [(8000, 1), (16000, 2), (22050, 3), (44100, 6), (48000, 2)])
def test_load_audio_formats_rates_channels(tmp_path, subtype, rate, channels):
    gains = np.linspace(0.4, 1.0, channels)
    data = sine(rate)[:, None] * gains  # channel mean has amplitude 0.5 * mean(gains)
    path = tmp_path / f"tone_{subtype}_{rate}_{channels}.wav"
    sf.write(path, data, rate, subtype=subtype)

    samples = load_audio(path)

    assert samples.dtype == np.float32 and samples.ndim == 1
    assert len(samples) == math.ceil(len(data) * SAMPLE_RATE / rate)
    amplitude, residual = fit_sine(samples)
    amplitude_tolerance, residual_tolerance = SUBTYPE_TOLERANCE[subtype]
    assert amplitude == pytest.approx(0.5 * gains.mean(), abs=amplitude_tolerance)
    assert residual < residual_tolerance


def test_load_audio_16k_pcm16_is_exact(tmp_path):
    ints = (np.random.default_rng(0).integers(-32768, 32767, 5000)).astype(np.int16)
    path = tmp_path / "exact.wav"
    sf.write(path, ints, SAMPLE_RATE, subtype="PCM_16")
    np.testing.assert_array_equal(load_audio(path), ints / np.float32(32768))


def test_load_audio_channel_mean(tmp_path):
    left = sine(SAMPLE_RATE, freq=440.0)
    right = sine(SAMPLE_RATE, freq=1000.0, amplitude=0.25)
    path = tmp_path / "stereo.wav"
    sf.write(path, np.stack([left, right], axis=1), SAMPLE_RATE, subtype="FLOAT")
    np.testing.assert_allclose(load_audio(path), (left + right) / 2, atol=1e-7)


def test_load_golden_talk_hb(golden):
    samples = load_audio(golden("audio/talk_hb_16k.wav"))
    assert samples.shape == (718147,)
    assert samples.dtype == np.float32
    num_frames = 1 + len(samples) // 200
    assert num_frames == 3591
    assert melspectrogram(samples).shape == (3591, 80)
    assert encoder_window_count(num_frames) == 1119


# --- bad input -------------------------------------------------------------------------------------------


def valid_wav(tmp_path, name="valid.wav"):
    path = tmp_path / name
    sf.write(path, sine(SAMPLE_RATE), SAMPLE_RATE, subtype="PCM_16")
    return path


def assert_audio_error(path, fragment):
    with pytest.raises(AudioError) as info:
        load_audio(path)
    message = str(info.value)
    assert str(path) in message
    assert fragment in message
    assert message.endswith(".") and "\n" not in message


def test_missing_file(tmp_path):
    assert_audio_error(tmp_path / "nope.wav", "does not exist")


def test_directory(tmp_path):
    assert_audio_error(tmp_path, "is not a file")


def test_empty_file(tmp_path):
    path = tmp_path / "empty.wav"
    path.write_bytes(b"")
    assert_audio_error(path, "could not be read as audio")


def test_text_file_named_wav(tmp_path):
    path = tmp_path / "notes.wav"
    path.write_text("this is not audio\n" * 20)
    assert_audio_error(path, "could not be read as audio")


def test_wav_with_zero_samples(tmp_path):
    path = tmp_path / "zero.wav"
    sf.write(path, np.zeros(0, np.float32), SAMPLE_RATE)
    assert_audio_error(path, "contains no audio samples")


def test_wav_cut_inside_header(tmp_path):
    path = tmp_path / "cut.wav"
    path.write_bytes(valid_wav(tmp_path).read_bytes()[:20])
    assert_audio_error(path, "could not be read as audio")


def test_wav_cut_after_header_has_no_samples(tmp_path):
    path = tmp_path / "header_only.wav"
    path.write_bytes(valid_wav(tmp_path).read_bytes()[:44])
    assert_audio_error(path, "contains no audio samples")


def test_truncated_wav_reads_what_is_there(tmp_path):
    # libsndfile trusts the file size over the header's chunk sizes: a WAV cut in half loads its first half.
    data = valid_wav(tmp_path).read_bytes()
    path = tmp_path / "half.wav"
    path.write_bytes(data[: len(data) // 2])
    assert len(load_audio(path)) == (len(data) // 2 - 44) // 2


def test_truncated_flac(tmp_path):
    full = tmp_path / "full.flac"
    sf.write(full, sine(SAMPLE_RATE, seconds=2.0), SAMPLE_RATE)
    path = tmp_path / "half.flac"
    path.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    assert_audio_error(path, "could not be read as audio")


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_samples(tmp_path, bad):
    data = sine(SAMPLE_RATE).astype(np.float32)
    data[123] = bad
    path = tmp_path / "nonfinite.wav"
    sf.write(path, data, SAMPLE_RATE, subtype="FLOAT")
    assert_audio_error(path, "NaN or infinite")


# --- example clips ---------------------------------------------------------------------------------------

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.mark.parametrize("name, num_samples", [("hello.wav", 90821), ("pauses.wav", 89366)])
def test_example_clips(name, num_samples):
    info = sf.info(EXAMPLES / name)
    assert (info.samplerate, info.channels, info.subtype) == (SAMPLE_RATE, 1, "PCM_16")
    assert len(load_audio(EXAMPLES / name)) == num_samples


def test_pauses_clip_has_a_one_second_gap():
    samples = load_audio(EXAMPLES / "pauses.wav")
    quiet = np.abs(samples[: len(samples) // 320 * 320]).reshape(-1, 320).max(axis=1) < 0.01  # 20 ms blocks
    gap = max(len(run) for run in "".join("q" if q else " " for q in quiet).split())
    assert 0.9 <= gap * 0.02 <= 1.2


# --- streaming -------------------------------------------------------------------------------------------


def one_shot_resample(samples, rate):
    """librosa's soxr_hq path on the whole signal at once: soxr "HQ", fixed to ceil(n * 16000 / rate)."""
    import soxr

    length = audio.resampled_length(len(samples), rate)
    resampled = soxr.resample(samples, rate, SAMPLE_RATE, quality="HQ")[:length]
    return np.pad(resampled, (0, length - len(resampled)))


@pytest.mark.parametrize("rate, channels", [(16000, 1), (44100, 2), (22050, 1), (48000, 6)])
def test_stream_blocks_add_up_to_the_whole_file(tmp_path, rate, channels):
    """Read block by block (chunk edges inside the resampler's window), the signal is the one-shot result."""
    rng = np.random.default_rng(rate)
    data = (0.3 * rng.standard_normal((int(rate * 9.3), channels))).astype(np.float32)
    path = tmp_path / "long.wav"
    sf.write(path, data, rate, subtype="FLOAT")
    stream = AudioStream(path)
    blocks = list(stream.blocks())
    assert len(blocks) > 2 and sum(map(len, blocks)) == stream.sample_count
    mono = data.mean(axis=1, dtype=np.float32) if channels > 1 else data[:, 0]
    whole = mono if rate == SAMPLE_RATE else one_shot_resample(mono, rate)
    np.testing.assert_allclose(np.concatenate(blocks), whole, atol=1e-6, rtol=0)
    assert stream.sample_count == math.ceil(len(data) * 16000 / rate)


def test_stream_knows_its_length_before_reading(tmp_path):
    sf.write(tmp_path / "a.wav", np.zeros(48000 * 3, np.int16), 48000)
    assert AudioStream(tmp_path / "a.wav").sample_count == 48000 and AudioStream(tmp_path / "a.wav").seconds == 3.0
