"""Silence detection on generated audio with known pauses: levels, hangover, lead-in, fades, streaming."""

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from lipsync_render.rendering.silence import (
    SAMPLES_PER_FRAME,
    SILENCE_DBFS,
    frame_levels,
    idle_ranges,
    still_weights,
    stream_still_weights,
)

EXAMPLES_DIR = Path(__file__).resolve().parents[2] / "examples"


def segments(*parts, seed=0):
    """16 kHz audio from (kind, frames) parts: 'tone' (a 220 Hz sine at -13 dBFS), 'zero', or a dBFS number
    for white noise at that RMS level."""
    rng = np.random.default_rng(seed)
    pieces = []
    for kind, frames in parts:
        n = frames * SAMPLES_PER_FRAME
        if kind == "tone":
            pieces.append(0.3 * np.sin(2 * np.pi * 220 * np.arange(n) / 16000))
        elif kind == "zero":
            pieces.append(np.zeros(n))
        else:
            pieces.append(rng.standard_normal(n) * 10 ** (kind / 20))
    return np.concatenate(pieces).astype(np.float32)


def weights_of(samples, block=7777):
    frames = -(-len(samples) // SAMPLES_PER_FRAME)
    blocks = [samples[i : i + block] for i in range(0, len(samples), block)]
    return np.array(list(stream_still_weights(iter(blocks), frames)))


FADE_OUT, FADE_IN = [0.25, 0.5, 0.75], [0.75, 0.5, 0.25]


def test_known_pauses_give_exact_idle_frames():
    """Loud 0-9, quiet 10-39, loud 40-44, quiet 45-52 (too short), loud 53-62, quiet 63-82 (to the end).

    A loud frame keeps 4 frames after it (hangover) and 2 before it (lead-in) rendered, then 3 fade frames."""
    samples = segments(("tone", 10), ("zero", 30), ("tone", 5), (-65, 8), ("tone", 10), ("zero", 20))
    weights = weights_of(samples)
    expected = np.zeros(83)
    expected[14:17], expected[17:35], expected[35:38] = FADE_OUT, 1, FADE_IN
    expected[49:51] = 0.25  # frames 49 and 50 are one frame from speaking on both sides: a dip, no idle frame
    expected[67:70], expected[70:] = FADE_OUT, 1
    np.testing.assert_array_equal(weights, expected)
    assert idle_ranges(weights) == [(17, 34), (70, 82)]


def test_threshold_separates_quiet_speech_from_room_noise():
    levels = np.concatenate(list(frame_levels([segments((-40, 20), (-60, 20), ("zero", 5))], 45)))
    assert np.all(np.abs(levels[:20] - -40) < 0.5) and np.all(np.abs(levels[20:40] - -60) < 0.5)
    assert np.isneginf(levels[40:]).all()
    assert (levels[:20] > SILENCE_DBFS).all() and (levels[20:] <= SILENCE_DBFS).all()
    weights = weights_of(segments((-40, 20), (-60, 30)))
    assert idle_ranges(weights) == [(27, 49)] and (weights[:24] == 0).all()


def test_leading_silence_is_idle_up_to_the_lead_in_and_its_fade():
    weights = weights_of(segments(("zero", 20), ("tone", 10)))
    np.testing.assert_array_equal(weights[:18], [1] * 15 + FADE_IN)
    assert (weights[18:] == 0).all()


@pytest.mark.parametrize("block", [1, 333, 640, 7777, 10**6])
def test_streamed_weights_equal_the_whole_signal_for_any_block_size(block):
    samples = segments(("tone", 7), ("zero", 17), (-45, 3), ("zero", 40), ("tone", 2), (-70, 31), seed=4)
    samples = samples[: len(samples) - 123]  # a partial last frame
    frames = -(-len(samples) // SAMPLES_PER_FRAME)
    levels = np.concatenate(list(frame_levels([samples], frames)))
    assert len(levels) == frames
    np.testing.assert_array_equal(weights_of(samples, block), still_weights(levels > SILENCE_DBFS))


def test_fully_silent_and_never_silent_audio():
    assert (weights_of(segments(("zero", 50))) == 1).all()
    assert (weights_of(np.zeros(100, np.float32)) == 1).all()  # shorter than a frame
    assert (weights_of(segments(("tone", 50))) == 0).all()


def test_frames_past_the_audio_count_as_silent():
    samples = segments(("tone", 3))
    levels = np.concatenate(list(frame_levels([samples], 5)))
    assert (levels[:3] > SILENCE_DBFS).all() and np.isneginf(levels[3:]).all()


def test_speech_with_a_pause_idles_inside_the_pause_only():
    """examples/pauses.wav: ~1.0 s of silence at 1.46-2.46 s, and the clip ends with eSpeak's ~0.39 s."""
    samples, _ = sf.read(EXAMPLES_DIR / "pauses.wav", dtype="float32")
    weights = weights_of(samples)
    ranges = idle_ranges(weights)
    assert len(ranges) == 2 and ranges[-1][1] == len(weights) - 1
    first, last = ranges[0]
    assert first / 25 >= 1.46 and (last + 1) / 25 <= 2.46 and last - first >= 10


@pytest.mark.skipif(not (shutil.which("espeak-ng") and shutil.which("sox")), reason="needs espeak-ng and sox")
def test_speech_with_long_pauses_idles_in_each_pause(tmp_path):
    """Two eSpeak NG sentences, each followed by 2.5 s of SoX silence: one idle run per pause, inside it."""
    sentences = ("First we say something.", "Then we say more.")
    ends, padded = [], []
    for i, sentence in enumerate(sentences):
        raw, pad = tmp_path / f"{i}.wav", tmp_path / f"{i}_padded.wav"
        subprocess.run(["espeak-ng", "-v", "en-us", "-w", str(raw), sentence], check=True, capture_output=True)
        subprocess.run(["sox", "-R", raw, pad, "pad", "0", "2.5"], check=True, capture_output=True)
        ends.append(sf.info(raw).duration)
        padded.append(pad)
    out = tmp_path / "speech.wav"
    subprocess.run(["sox", "-R", *padded, "-r", "16000", "-c", "1", "-b", "16", out], check=True, capture_output=True)
    weights = weights_of(sf.read(out, dtype="float32")[0])
    pause_starts = [ends[0], ends[0] + 2.5 + ends[1]]  # where the padding begins (eSpeak adds some silence itself)
    ranges = idle_ranges(weights)
    assert len(ranges) == 2
    for (first, last), start in zip(ranges, pause_starts, strict=True):
        assert start - 0.6 <= first / 25 <= start + 0.5  # eSpeak's own trailing silence is under 0.6 s
        assert last - first + 1 >= 2.5 * 25 - 12 and (last + 1) / 25 <= start + 2.5 + 0.04  # a partial last frame
    assert ranges[-1][1] == len(weights) - 1
