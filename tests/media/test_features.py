import math
from fractions import Fraction

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from lipsync_render.contract import AUDIO_ENCODER
from lipsync_render.media.features import (
    audio_features,
    encode,
    encoder_window_count,
    encoder_windows,
    frame_block,
    frame_blocks,
    frame_count_for_audio,
    frame_features,
    window_starts,
)
from lipsync_render.media.mel import melspectrogram
from lipsync_render.runtimes.ort.runner import OrtModel


@pytest.fixture
def golden(golden_path):
    """golden("mel/x.npy") -> the loaded array (skips when absent)."""
    return lambda relative: np.load(golden_path(relative))


# --- windows ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "num_frames, expected",
    [(52, 13), (1674, 520), (3591, 1119), (16, 2), (17, 2), (384, 116), (672, 206)],
)
def test_encoder_window_count(num_frames, expected):
    assert encoder_window_count(num_frames) == expected


def test_window_count_keeps_the_float_rounding():
    # (384 - 16) / 80 * 25 = 114.99999999999999 in IEEE double: the reference gets 116 windows where exact
    # integer math would give (368 * 25) // 80 + 2 = 117.
    assert (384 - 16) * 25 // 80 + 2 == 117
    assert encoder_window_count(384) == 116


def test_window_starts():
    np.testing.assert_array_equal(window_starts(1674)[:10], [0, 3, 6, 9, 12, 16, 19, 22, 25, 28])
    assert (80 * 519) // 25 == 1660  # past T - 16 = 1658, so the last window is clamped
    assert window_starts(1674)[-1] == 1658
    # 640 ms: 13 windows, the last one clamped to frames 36..51
    np.testing.assert_array_equal(window_starts(52), [0, 3, 6, 9, 12, 16, 19, 22, 25, 28, 32, 35, 36])


def test_encoder_windows_layout():
    mel = np.arange(52 * 80, dtype=np.float32).reshape(52, 80)
    windows = encoder_windows(mel)
    assert windows.shape == (13, 1, 80, 16) and windows.dtype == np.float32
    assert windows.flags.c_contiguous
    for i, start in enumerate(window_starts(52)):
        np.testing.assert_array_equal(windows[i, 0], mel[start : start + 16].T)


def test_golden_windows_from_golden_mel(golden):
    # The golden windows are float64 slices of the float64 reference mel; the golden mel file is that mel
    # rounded to float32. So our float32 windows of it equal the golden windows rounded to float32 exactly,
    # while as float64 the two differ by the float32 rounding (~1.2e-7).
    mel = golden("mel/speech_20s_16k_mel.npy")
    windows = encoder_windows(mel)
    for i in range(10):
        expected = golden(f"mel/speech_20s_window_{i}.npy")
        np.testing.assert_array_equal(windows[i, 0], expected.T.astype(np.float32))
        assert np.abs(windows[i, 0].astype(np.float64) - expected.T).max() < 2.5e-7


def test_golden_windows_from_our_mel(golden):
    windows = encoder_windows(melspectrogram(golden("mel/speech_20s_16k.npy")))
    assert windows.shape == (520, 1, 80, 16)
    for i in range(10):
        expected = golden(f"mel/speech_20s_window_{i}.npy")
        assert np.abs(windows[i, 0] - expected.T).max() < 1e-6


@pytest.mark.parametrize("num_frames", [1, 5, 15])
def test_short_mel_is_padded_with_silence(num_frames):
    mel = np.full((num_frames, 80), 1.5, np.float32)
    windows = encoder_windows(mel)
    assert windows.shape == (2, 1, 80, 16)
    np.testing.assert_array_equal(windows[:, 0, :, :num_frames], 1.5)
    np.testing.assert_array_equal(windows[:, 0, :, num_frames:], -4.0)


# --- encoder inference -----------------------------------------------------------------------------------


def linear_encoder(weights, batch=None, input_name="mel_spectrogram", output_name="audio_features", batch_size=64):
    """A stand-in AVE encoder run in batches of ``batch_size``: flatten each [1, 80, 16] window and multiply by
    ``weights`` [1280, 512]."""
    batch_dim = batch if batch is not None else "batch_size"
    graph = helper.make_graph(
        [
            helper.make_node("Reshape", [input_name, "flat_shape"], ["flat"]),
            helper.make_node("MatMul", ["flat", "weights"], [output_name]),
        ],
        "linear_encoder",
        [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, [batch_dim, 1, 80, 16])],
        [helper.make_tensor_value_info(output_name, TensorProto.FLOAT, [batch_dim, 512])],
        initializer=[
            numpy_helper.from_array(np.array([-1, 1280], np.int64), "flat_shape"),
            numpy_helper.from_array(weights, "weights"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return OrtModel(session, AUDIO_ENCODER, batch_size)


@pytest.fixture(scope="module")
def weights():
    return np.random.default_rng(1).standard_normal((1280, 512)).astype(np.float32) / 40


@pytest.fixture(scope="module")
def windows():
    return np.random.default_rng(2).uniform(-4, 4, (37, 1, 80, 16)).astype(np.float32)


def test_encode_matches_the_model(weights, windows):
    features = encode(linear_encoder(weights), windows)
    assert features.shape == (37, 512) and features.dtype == np.float32
    expected = windows.reshape(37, -1).astype(np.float64) @ weights
    np.testing.assert_allclose(features, expected, rtol=1e-4, atol=1e-4)


def test_encode_batching_matches_one_by_one(weights, windows):
    session = linear_encoder(weights)
    one_by_one = np.concatenate([encode(session, windows[i : i + 1]) for i in range(len(windows))])
    for batch_size in (1, 5, 16, 64):
        batched = encode(linear_encoder(weights, batch_size=batch_size), windows)
        np.testing.assert_allclose(batched, one_by_one, atol=1e-5)


def test_encode_reads_names_from_the_session(weights, windows):
    session = linear_encoder(weights, input_name="x", output_name="y")
    reference = encode(linear_encoder(weights), windows)
    np.testing.assert_allclose(encode(session, windows), reference, atol=1e-5)


@pytest.mark.parametrize("fixed_batch", [1, 4])
def test_encode_static_batch(weights, windows, fixed_batch):
    session = linear_encoder(weights, batch=fixed_batch)
    reference = encode(linear_encoder(weights), windows)
    np.testing.assert_allclose(encode(session, windows), reference, atol=1e-5)


# --- per-frame blocks ------------------------------------------------------------------------------------


def plain_frame_block(table, k):
    """Spec §3 written out: rows k-8 .. k+7 copied one by one, zeros outside the table, C-order reshape."""
    block = np.zeros((16, 512), np.float32)
    for position, row in enumerate(range(k - 8, k + 8)):
        if 0 <= row < len(table):
            block[position] = table[row]
    return block.reshape(32, 16, 16)


def test_frame_features_duplicates_ends():
    encoded = np.arange(5 * 512, dtype=np.float32).reshape(5, 512)
    table = frame_features(encoded)
    assert table.shape == (7, 512)
    np.testing.assert_array_equal(table[0], encoded[0])
    np.testing.assert_array_equal(table[1:6], encoded)
    np.testing.assert_array_equal(table[6], encoded[-1])


def test_golden_table_has_duplicated_ends(golden):
    table = golden("sanders/aud_ave.npy")
    assert table.shape == (522, 512)
    np.testing.assert_array_equal(table[0], table[1])
    np.testing.assert_array_equal(table[520], table[521])


def test_frame_blocks_match_plain_loop(golden):
    table = golden("sanders/aud_ave.npy")
    n = len(table)
    ks = [0, 1, 7, 8, 9, n // 2, n - 8, n - 1, n, n + 1, n + 3, n + 8, n + 20]

    blocks = frame_blocks(table, ks)

    assert blocks.shape == (len(ks), 32, 16, 16) and blocks.dtype == np.float32
    for k, block in zip(ks, blocks):
        np.testing.assert_array_equal(block, plain_frame_block(table, k), err_msg=f"k={k}")
        np.testing.assert_array_equal(frame_block(table, k), block)
    assert not blocks[ks.index(n + 8)].any() and not blocks[ks.index(n + 20)].any()


def test_frame_block_channel_layout(golden):
    table = golden("sanders/aud_ave.npy")
    k = 100
    block = frame_block(table, k)
    for t in range(16):
        row = table[k - 8 + t]
        np.testing.assert_array_equal(block[2 * t], row[:256].reshape(16, 16))
        np.testing.assert_array_equal(block[2 * t + 1], row[256:].reshape(16, 16))
    # frame k's own feature row sits at window position 8
    np.testing.assert_array_equal(block[16:18].reshape(-1), table[k])


def test_frame_blocks_zero_rows_at_the_start():
    table = np.ones((30, 512), np.float32)
    block = frame_block(table, 2)
    assert not block[:12].any()  # rows -6 .. -1 -> 6 time steps = 12 channels
    assert block[12:].all()


def test_frame_blocks_does_not_modify_the_table():
    table = np.ones((10, 512), np.float32)
    frame_blocks(table, range(15))
    assert table.all()


# --- whole chain and frame count -------------------------------------------------------------------------


def test_audio_features_end_to_end(weights):
    samples = (0.3 * np.sin(2 * np.pi * 440 * np.arange(16000) / 16000)).astype(np.float32)
    session = linear_encoder(weights)
    table = audio_features(samples, session)
    mel = melspectrogram(samples)
    num_windows = encoder_window_count(len(mel))
    assert table.shape == (num_windows + 2, 512)
    np.testing.assert_allclose(table[1:-1], encode(session, encoder_windows(mel)), atol=1e-6)


@pytest.mark.parametrize("num_samples", [0, 1, 639, 640, 641, 10240, 334739, 718147, 16000 * 600 + 7])
def test_frame_count_for_audio(num_samples):
    assert frame_count_for_audio(num_samples) == math.ceil(Fraction(num_samples, 16000) * 25)


def test_frame_count_covers_more_than_the_table():
    # The reference renders N_enc + 2 frames; covering the whole audio takes one or two more.
    assert frame_count_for_audio(334739) == 524 == encoder_window_count(1674) + 2 + 2
    assert frame_count_for_audio(718147) == 1123 == encoder_window_count(3591) + 2 + 2
    assert frame_count_for_audio(10240) == 16 == encoder_window_count(52) + 2 + 1
