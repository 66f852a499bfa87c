"""Geometry of §5.3-§6 against a plain, line-by-line transcription of the reference (inference_328.py)."""

import cv2
import numpy as np
import pytest

from lipsync_render.model_input import crop_328, prediction_to_uint8, visual_input
from lipsync_render.rendering.geometry import composite_frame, cross_fade, feather_alpha, feathered_roi


def reference_input(frame, rect):
    """The reference's model input and 328 template, step by step."""
    xmin, ymin, xmax, ymax = rect
    crop_img = frame[ymin:ymax, xmin:xmax]
    img = cv2.resize(crop_img, (328, 328), interpolation=cv2.INTER_CUBIC)
    img_real_ex = img[4:324, 4:324, :].copy()
    img_real_ex_ori = img_real_ex.copy()
    img_masked = cv2.rectangle(img_real_ex_ori, (5, 5, 310, 305), (0, 0, 0), -1)
    img_masked = img_masked.transpose(2, 0, 1).astype(np.float32)
    img_real_ex = img_real_ex.transpose(2, 0, 1).astype(np.float32)
    tensor = np.concatenate([img_real_ex / 255.0, img_masked / 255.0], axis=0)
    return tensor, img


def reference_paste(frame, rect, template, output):
    """The reference's paste-back of one (3, 320, 320) output."""
    xmin, ymin, xmax, ymax = rect
    h, w = ymax - ymin, xmax - xmin
    pred = output.transpose(1, 2, 0) * 255
    pred = np.array(pred, dtype=np.uint8)
    template = template.copy()
    template[4:324, 4:324] = pred
    back = cv2.resize(template, (w, h), interpolation=cv2.INTER_CUBIC)
    result = frame.copy()
    result[ymin:ymax, xmin:xmax] = back
    return result


@pytest.fixture
def frame():
    rng = np.random.default_rng(7)
    base = cv2.GaussianBlur(rng.integers(0, 256, (720, 1280, 3), dtype=np.uint8), (0, 0), 3)
    return np.ascontiguousarray(base)


@pytest.mark.parametrize("rect", [(532, 210, 714, 392), (502, 329, 691, 518), (0, 0, 173, 173), (1100, 531, 1280, 711)])
def test_model_input_is_bit_exact(frame, rect):
    expected, _ = reference_input(frame, rect)
    ours = visual_input(crop_328(frame, rect))
    assert ours.dtype == np.float32 and ours.shape == (6, 320, 320)
    assert np.array_equal(ours, expected)


def test_mask_zeroes_exactly_rows_5_309_and_cols_5_314(frame):
    tensor = visual_input(crop_328(frame, (532, 210, 714, 392)))
    masked = tensor[3:]
    zero = np.all(masked == 0, axis=0)
    assert zero[5:310, 5:315].all()
    assert zero.sum() - np.all(tensor[:3] == 0, axis=0).sum() <= 94550
    assert np.array_equal(masked[:, :5], tensor[:3, :5]) and np.array_equal(masked[:, 310:], tensor[:3, 310:])
    assert np.array_equal(masked[:, :, 315:], tensor[:3, :, 315:])


def test_channel_order_is_bgr(frame):
    solid = np.zeros_like(frame)
    solid[..., 0] = 200  # blue in BGR
    tensor = visual_input(crop_328(solid, (532, 210, 714, 392)))
    assert np.allclose(tensor[0], 200 / 255) and np.allclose(tensor[2], 0)


@pytest.mark.parametrize("rect", [(532, 210, 714, 392), (560, 300, 749, 489)])
def test_paste_back_is_bit_exact(frame, rect):
    rng = np.random.default_rng(1)
    output = rng.random((1, 3, 320, 320), dtype=np.float32)
    _, template = reference_input(frame, rect)
    expected = reference_paste(frame, rect, template, output[0])
    ours = composite_frame(frame, rect, prediction_to_uint8(output)[0])
    assert np.array_equal(ours, expected)
    outside = np.ones(frame.shape[:2], bool)
    outside[rect[1] : rect[3], rect[0] : rect[2]] = False
    assert np.array_equal(ours[outside], frame[outside])


def test_prediction_truncates_like_the_reference():
    output = np.array([0.999, 0.5, 0.00392, 0.996], np.float32).reshape(1, 1, 1, 4).repeat(3, axis=1)
    assert prediction_to_uint8(output)[0, 0, :, 0].tolist() == [254, 127, 0, 253]


# --- --blend feather ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("pixels", [1, 16, 64])
def test_feather_ramp_rises_from_every_edge_and_is_one_inside(pixels):
    alpha = feather_alpha(pixels)[..., 0]
    assert alpha.shape == (320, 320)
    inside = alpha[pixels:-pixels, pixels:-pixels] if pixels < 160 else alpha[:0]
    assert (inside == 1).all() and (alpha <= 1).all() and (alpha > 0).all()
    row = alpha[160]
    assert np.all(np.diff(row[:pixels]) > 0) and row[0] == np.float32(0.5 / pixels)
    assert np.array_equal(row, row[::-1]) and np.array_equal(alpha, alpha.T)
    assert (alpha[:pixels] < 1).all() and (alpha[:, -pixels:] < 1).all()


def test_feathered_roi_is_the_prediction_inside_and_between_at_the_edges():
    rng = np.random.default_rng(2)
    original = rng.integers(0, 256, (320, 320, 3), dtype=np.uint8)
    prediction = rng.integers(0, 256, (320, 320, 3), dtype=np.uint8)
    blended = feathered_roi(original, prediction, 16)
    assert np.array_equal(blended[16:-16, 16:-16], prediction[16:-16, 16:-16])
    low, high = np.minimum(original, prediction), np.maximum(original, prediction)
    assert ((blended >= low) & (blended <= high)).all()
    edge = blended[:, 0].astype(int) - original[:, 0]  # weight 1/32 of the prediction on the outermost pixels
    assert np.abs(edge).max() <= 8 and np.abs(blended[16:-16, 15].astype(int) - prediction[16:-16, 15]).max() <= 8


def interior_of_ramp(length: int, pixels: int) -> np.ndarray:
    """Output pixels along one side of the rectangle whose 4 cubic taps in the 328 crop all lie where the ramp
    is 1 (crop pixels 4 + pixels .. 323 - pixels): there feather and hard must give the same bits."""
    source = (np.arange(length) + 0.5) * 328 / length - 0.5
    first = np.floor(source).astype(int) - 1
    return (first >= 4 + pixels) & (first + 3 <= 323 - pixels)


@pytest.mark.parametrize(
    "rect, pixels", [((532, 210, 714, 392), 16), ((0, 0, 173, 173), 4), ((500, 300, 900, 700), 40)]
)
def test_feather_changes_only_the_ramp_inside_the_rectangle(frame, rect, pixels):
    rng = np.random.default_rng(5)
    prediction = rng.integers(0, 256, (320, 320, 3), dtype=np.uint8)
    hard = composite_frame(frame, rect, prediction)
    feathered = composite_frame(frame, rect, prediction, feather=pixels)
    x1, y1, x2, y2 = rect
    outside = np.ones(frame.shape[:2], bool)
    outside[y1:y2, x1:x2] = False
    assert np.array_equal(feathered[outside], frame[outside])
    interior = interior_of_ramp(y2 - y1, pixels)[:, None] & interior_of_ramp(x2 - x1, pixels)[None, :]
    assert interior.any() and not interior.all()
    face_hard, face_feathered = hard[y1:y2, x1:x2], feathered[y1:y2, x1:x2]
    assert np.array_equal(face_feathered[interior], face_hard[interior])
    assert (face_feathered[~interior] != face_hard[~interior]).any()


def test_hard_is_the_default_and_feather_zero(frame):
    rect = (532, 210, 714, 392)
    prediction = np.random.default_rng(3).integers(0, 256, (320, 320, 3), dtype=np.uint8)
    assert np.array_equal(composite_frame(frame, rect, prediction, feather=0), composite_frame(frame, rect, prediction))


def test_cross_fade_weights(frame):
    other = 255 - frame
    out = np.empty_like(frame)
    assert np.array_equal(cross_fade(frame, other, 0.0, out), frame)
    assert np.array_equal(cross_fade(frame, other, 1.0, out), other)
    half = cross_fade(frame, other, 0.5, out).astype(int)
    assert np.abs(half - (frame.astype(int) + other) / 2).max() <= 0.5
