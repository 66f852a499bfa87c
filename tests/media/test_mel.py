"""The mel spectrogram: goldens, float64 chain, chunking and streaming, filters, pre-emphasis."""

import numpy as np
import pytest

from lipsync_render.media import mel as audio
from lipsync_render.media.mel import mel_chunks, melspectrogram


@pytest.fixture
def golden(golden_path):
    return golden_path


def reference_mel64(samples):
    """The mel chain kept in float64 (the reference never rounds to float32)."""
    mel = audio.mel_amplitude(samples)
    return audio.normalize_db(audio.amp_to_db(mel) - audio.REF_LEVEL_DB)


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


@pytest.mark.parametrize("block", [1, 199, 200, 4096, 65536, 300001])
def test_streamed_mel_is_bit_identical_to_the_whole(block):
    """Blocks of any size, chunk edges and a 1024-frame STFT chunk boundary included, give the same bits."""
    rng = np.random.default_rng(block)
    samples = (0.2 * rng.standard_normal(205 * 1024 + 77)).astype(np.float32)
    blocks = [samples[i : i + block] for i in range(0, len(samples), block)]
    streamed = np.concatenate(list(mel_chunks(iter(blocks), len(samples))))
    np.testing.assert_array_equal(streamed, melspectrogram(samples))


def test_stream_of_the_wrong_length_is_an_error():
    with pytest.raises(ValueError, match="not the 500 announced"):
        list(mel_chunks([np.zeros(400, np.float32)], 500))
