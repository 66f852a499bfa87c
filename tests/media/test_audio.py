import math
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from lipsync_render.errors import AudioError
from lipsync_render.media import audio
from lipsync_render.media.audio import SAMPLE_RATE, load_audio, melspectrogram
from lipsync_render.render.features import encoder_window_count


@pytest.fixture
def golden(golden_path):
    return golden_path


def reference_mel64(samples):
    """The mel chain kept in float64 (the reference never rounds to float32)."""
    mel = audio.mel_amplitude(samples)
    return audio.normalize_db(audio.amp_to_db(mel) - audio.REF_LEVEL_DB)


# --- mel -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["sine440_640ms", "speech_20s_16k"])
def test_mel_matches_golden(golden, name):
    samples = np.load(golden(f"mel/{name}.npy"))
    expected = np.load(golden(f"mel/{name}_mel.npy"))

    mel = melspectrogram(samples)

    assert mel.dtype == np.float32
    assert mel.shape == expected.shape == (1 + len(samples) // 200, 80)
    assert np.abs(mel - expected).max() < 1e-6


def test_float64_mel_chain_reproduces_golden_to_rounding(golden):
    # The sine golden is float64: the float64 chain with the float32 librosa basis matches to ~1e-14.
    samples = np.load(golden("mel/sine440_640ms.npy"))
    expected = np.load(golden("mel/sine440_640ms_mel.npy"))
    assert np.abs(reference_mel64(samples) - expected).max() < 1e-12


def test_speech_mel_equals_float32_golden_exactly(golden):
    samples = np.load(golden("mel/speech_20s_16k.npy"))
    expected = np.load(golden("mel/speech_20s_16k_mel.npy"))
    np.testing.assert_array_equal(melspectrogram(samples), expected)


def test_stft_chunking_does_not_change_the_mel(golden, monkeypatch):
    samples = np.load(golden("mel/speech_20s_16k.npy"))[:40000]
    whole = melspectrogram(samples)
    monkeypatch.setattr(audio, "_STFT_CHUNK_FRAMES", 7)
    np.testing.assert_array_equal(melspectrogram(samples), whole)


@pytest.mark.parametrize("num_samples", [1, 199, 200, 201, 3000, 10240])
def test_mel_frame_count(num_samples):
    samples = np.random.default_rng(num_samples).uniform(-0.5, 0.5, num_samples).astype(np.float32)
    mel = melspectrogram(samples)
    assert mel.shape == (audio.mel_frame_count(num_samples), 80) == (1 + num_samples // 200, 80)
    assert mel.min() >= -4 and mel.max() <= 4


def test_silence_is_minus_four():
    assert np.all(melspectrogram(np.zeros(4000, np.float32)) == -4.0)


def test_preemphasis_keeps_first_sample():
    x = np.array([1.0, 2.0, 0.5], np.float32)
    np.testing.assert_allclose(audio.preemphasis(x), [1.0, 2.0 - 0.97, 0.5 - 1.94])
    np.testing.assert_allclose(audio.preemphasis(x, pad=2), [0, 0, 1.0, 2.0 - 0.97, 0.5 - 1.94, 0, 0])


def test_preemphasis_is_float64():
    x = np.random.default_rng(0).standard_normal(1000).astype(np.float32)
    x64 = x.astype(np.float64)
    expected = np.concatenate([x64[:1], x64[1:] - 0.97 * x64[:-1]])
    np.testing.assert_array_equal(audio.preemphasis(x), expected)


def test_mel_filters_shape_and_slaney_area():
    filters = audio.mel_filters()
    assert filters.shape == (80, 401)
    assert filters.min() == 0.0
    # Slaney norm: every triangle integrates to ~1 over Hz (bin spacing 20 Hz).
    area = filters.sum(axis=1) * 20.0
    np.testing.assert_allclose(area, 1.0, rtol=0.05)
    # Band edges: nothing below 55 Hz (bins 0..2) or above 7600 Hz (bin 380).
    assert not filters[:, :3].any() and not filters[:, 381:].any()


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
