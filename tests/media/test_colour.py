"""BT.709 limited-range conversion: exact to one level, and decoded back by swscale as a player would."""

import av
import cv2
import numpy as np
import pytest

from lipsync_render.media.colour import CB, CR, LUMA, BT709Converter, decode_bgr, i420_shape

SKIN = (149, 174, 214)  # BGR of the skin pixel that played five levels redder under BT.601


def exact_i420(frame: np.ndarray) -> np.ndarray:
    """The conversion in float64 with exact rounding: luma per pixel, chroma from 2x2 means."""
    h, w = frame.shape[:2]
    pixels = frame.astype(np.float64)
    means = pixels.reshape(h // 2, 2, w // 2, 2, 3).mean(axis=(1, 3))
    planes = [pixels @ np.array(LUMA) + 16, means @ np.array(CB) + 128, means @ np.array(CR) + 128]
    return np.concatenate([np.floor(p + 0.5).clip(0, 255).reshape(-1) for p in planes]).reshape(i420_shape(w, h))


def to_frame(i420: np.ndarray, colorspace: int) -> av.VideoFrame:
    frame = av.VideoFrame.from_ndarray(i420, format="yuv420p")
    frame.colorspace, frame.color_range = colorspace, 1
    return frame


@pytest.mark.parametrize("size", [(1280, 720), (64, 36)])
def test_conversion_is_within_one_level_of_exact(size):
    frame = np.random.default_rng(0).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    got = BT709Converter(*size).convert(frame).astype(int)
    assert np.abs(got - exact_i420(frame)).max() <= 1


@pytest.mark.parametrize("colour", [SKIN, (0, 0, 0), (255, 255, 255), (255, 0, 0), (0, 255, 0), (0, 0, 255)])
def test_flat_colours_decode_back_within_two_levels_when_the_tags_are_honoured(colour):
    frame = np.full((64, 64, 3), colour, np.uint8)
    i420 = BT709Converter(64, 64).convert(frame)
    decoded = decode_bgr(to_frame(i420, colorspace=1))
    assert np.abs(decoded.astype(int) - colour).max() <= 2


def test_opencvs_bt601_conversion_read_as_bt709_is_what_players_showed():
    """The bug this module fixes: OpenCV's BT.601 I420 shown with the BT.709 matrix shifts skin redder."""
    frame = np.full((64, 64, 3), SKIN, np.uint8)
    shown_before = decode_bgr(to_frame(cv2.cvtColor(frame, cv2.COLOR_BGR2YUV_I420), colorspace=1))
    shown_now = decode_bgr(to_frame(BT709Converter(64, 64).convert(frame), colorspace=1))
    assert shown_before[0, 0, 2] - SKIN[2] >= 3
    assert np.abs(shown_now.astype(int) - SKIN).max() <= 1


def test_resizing_to_the_output_size():
    frame = np.zeros((720, 1280, 3), np.uint8)
    frame[:, 640:] = SKIN
    converter = BT709Converter(1280, 720, 640, 360)
    small = converter.fit(frame)
    assert small.shape == (360, 640, 3)
    assert np.array_equal(small[:, 330:], np.broadcast_to(SKIN, (360, 310, 3)))
    assert converter.convert(small).shape == (540, 640)
    assert BT709Converter(64, 64).fit(frame) is frame  # same size: untouched


def test_untagged_frames_decode_as_bt601():
    frame = np.full((64, 64, 3), SKIN, np.uint8)
    i420 = cv2.cvtColor(frame, cv2.COLOR_BGR2YUV_I420)  # OpenCV's BT.601
    decoded = decode_bgr(to_frame(i420, colorspace=2))  # 2: unspecified
    assert np.abs(decoded.astype(int) - SKIN).max() <= 2
