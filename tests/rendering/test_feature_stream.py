"""The streamed feature table: a ring of rows, filled from streamed mel, read in order, equal to the whole table."""

import threading

import numpy as np
import pytest

from lipsync_render.contract import AUDIO_ENCODER
from lipsync_render.media.features import audio_features, encoder_window_count, frame_blocks, frame_count_for_audio
from lipsync_render.media.mel import mel_chunks, mel_frame_count
from lipsync_render.options import SessionOptions
from lipsync_render.package import load_package
from lipsync_render.rendering.feature_stream import FeatureStream, ring_rows
from lipsync_render.runtimes import get_backend
from lipsync_render.runtimes.calibration import babble


@pytest.fixture(scope="module")
def audio_encoder(tiny_package):
    return get_backend().load(load_package(tiny_package), AUDIO_ENCODER, SessionOptions(device="cpu"))


@pytest.mark.parametrize("seconds, batch", [(31.7, 4), (0.1, 1), (40.0, 25)])
def test_streamed_blocks_equal_the_whole_table(audio_encoder, seconds, batch):
    """Rows wrap around a ring far smaller than the table, and every frame still reads exactly its rows."""
    samples = babble(seconds, seed=3)
    table = audio_features(samples, audio_encoder)
    mel_frames = mel_frame_count(len(samples))
    stream = FeatureStream(encoder_window_count(mel_frames) + 2, ring_rows(batch))
    assert stream.capacity < len(table) or seconds < 1
    cancel = threading.Event()
    blocks = [samples[i : i + 7777] for i in range(0, len(samples), 7777)]
    writer = threading.Thread(
        target=stream.fill, args=(mel_chunks(iter(blocks), len(samples)), mel_frames, audio_encoder, cancel)
    )
    writer.start()
    frames = frame_count_for_audio(len(samples))
    for first in range(0, frames, batch):
        numbers = np.arange(first, min(frames, first + batch))
        np.testing.assert_array_equal(stream.blocks(numbers, cancel), frame_blocks(table, numbers))
    writer.join(timeout=30)
    assert not writer.is_alive()


def test_a_cancelled_render_stops_a_waiting_writer(audio_encoder):
    samples = babble(20.0)
    mel_frames = mel_frame_count(len(samples))
    stream = FeatureStream(encoder_window_count(mel_frames) + 2, ring_rows(1))
    cancel = threading.Event()
    errors = []

    def fill():
        try:
            stream.fill(mel_chunks([samples], len(samples)), mel_frames, audio_encoder, cancel)
        except Exception as exc:  # the cancellation the writer must see
            errors.append(type(exc).__name__)

    writer = threading.Thread(target=fill)
    writer.start()
    writer.join(timeout=2)
    assert writer.is_alive(), "nobody reads, so the writer waits for room in the ring"
    cancel.set()
    writer.join(timeout=5)
    assert not writer.is_alive() and errors == ["Cancelled"]


def test_reads_that_skip_frames_get_their_rows_and_never_stall_the_writer(audio_encoder):
    """Idle frames are never read: gaps far longer than the ring, then no read at all to the end."""
    samples = babble(30.0, seed=5)
    table = audio_features(samples, audio_encoder)
    mel_frames = mel_frame_count(len(samples))
    stream = FeatureStream(encoder_window_count(mel_frames) + 2, ring_rows(4))
    cancel = threading.Event()
    writer = threading.Thread(
        target=stream.fill, args=(mel_chunks([samples], len(samples)), mel_frames, audio_encoder, cancel)
    )
    writer.start()
    for numbers in ([0, 1, 3], [4, 400, 401], [402], [650, 652, 653]):  # 400 - 4 > the ring's 288 rows
        assert stream.capacity < 396
        np.testing.assert_array_equal(stream.blocks(np.array(numbers), cancel), frame_blocks(table, numbers))
    assert stream.blocks(np.array([], int), cancel).shape == (0, 32, 16, 16)
    stream.stop_reading()
    writer.join(timeout=30)
    assert not writer.is_alive()
