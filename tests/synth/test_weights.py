"""Constructed weights: the true graphs pass the face through and open a dark mouth with loud audio only."""

import numpy as np
import onnxruntime as ort
import pytest

from lipsync_render import model_input
from lipsync_render.contract import AUDIO_ENCODER, count_parameters
from lipsync_render.media import features
from lipsync_render.runtimes.ort.runner import OrtModel
from lipsync_render.synth.architectures import build_encoder, build_unet, conv_macs
from lipsync_render.synth.avatar import avatar_frames, avatar_rects
from lipsync_render.synth.weights import ConstructedWeights, decoded_bump_profiles, logit_fit

UNET_FOLDED = 12_153_887
ENCODER_FOLDED = 2_808_256

# Where the avatar's mouth opens in the 320x320 ROI: darkness is measured in MOUTH_BOX; the opening (at most
# rows ~126..191, cols ~98..221 at the loudness cap) stays inside MOUTH_AREA, and PSNR is measured outside it.
MOUTH_BOX = (slice(135, 185), slice(110, 210))
MOUTH_AREA = (slice(115, 200), slice(90, 230))
MIN_LOUD_DROP = 30.0  # mean luminance drop (uint8 levels) in MOUTH_BOX for loud audio
MIN_PSNR = 30.0


@pytest.fixture(scope="module")
def weights():
    return ConstructedWeights(seed=0)


def _session(model):
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


@pytest.fixture(scope="module")
def unet_model(weights):
    return build_unet(weights)


@pytest.fixture(scope="module")
def encoder_model(weights):
    return build_encoder(weights)


@pytest.fixture(scope="module")
def unet(unet_model):
    return _session(unet_model)


@pytest.fixture(scope="module")
def encoder(encoder_model):
    return OrtModel(_session(encoder_model), AUDIO_ENCODER, 64)


@pytest.fixture(scope="module")
def faces():
    """Visual inputs (3, 6, 320, 320) of three avatar frames at different head positions."""
    count = 40
    frames = list(avatar_frames(count, 1280, 720, seed=1))
    rects = avatar_rects(count, 1280, 720)
    picks = [0, 13, 27]
    return np.stack([model_input.visual_input(model_input.crop_328(frames[i], rects[i])) for i in picks])


def _encode(encoder, windows):
    """Encoder features [N, 512] of mel windows given as (N, 80, 16)."""
    return features.encode(encoder, np.asarray(windows, np.float32)[:, None])


def _steady_block(feature):
    """A UNet audio input (32, 16, 16) whose 16 time steps all hold `feature` (a sustained sound)."""
    return features.frame_blocks(np.tile(feature, (16, 1)), [8])[0]


def _render(unet, faces, blocks):
    """uint8 predictions (N, 320, 320, 3) and the uint8 input ROIs they should reproduce."""
    (output,) = unet.run(["output"], {"input": faces, "audio": np.asarray(blocks, np.float32)})
    reference = np.round(faces[:, :3].transpose(0, 2, 3, 1) * 255).astype(np.uint8)
    return model_input.prediction_to_uint8(output), reference


def _luminance(images):
    images = images.astype(np.float64)
    return 0.114 * images[..., 0] + 0.587 * images[..., 1] + 0.299 * images[..., 2]


def _mouth_drop(prediction, reference):
    """Mean luminance drop in the mouth box, per image."""
    box = (slice(None), *MOUTH_BOX)
    return _luminance(reference[box]).mean((1, 2)) - _luminance(prediction[box]).mean((1, 2))


def _psnr(a, b):
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return np.inf if mse == 0 else 10 * np.log10(255.0**2 / mse)


def _outside_mouth(images):
    keep = np.ones(images.shape[1:3], bool)
    keep[MOUTH_AREA] = False
    return images[:, keep]


def _level_windows(levels):
    """Mel windows (N, 80, 16) of constant level: -4 is digital silence, about -1 and up is loud speech."""
    return np.stack([np.full((80, 16), level, np.float32) for level in levels])


def test_parameter_counts_and_cost_match_the_true_architectures(unet_model, encoder_model):
    assert count_parameters(unet_model) == UNET_FOLDED
    assert count_parameters(encoder_model) == ENCODER_FOLDED
    assert conv_macs(unet_model) == pytest.approx(4.886e9, rel=1e-3)
    assert conv_macs(encoder_model) == pytest.approx(93.09e6, rel=1e-3)


def test_constructed_convs_exist_in_the_graphs(weights, unet_model, encoder_model):
    conv_names = {
        node.name for model in (unet_model, encoder_model) for node in model.graph.node if node.op_type == "Conv"
    }
    assert weights.constructed_convs <= conv_names


def test_logit_fit_makes_sigmoid_truncate_back_to_every_level():
    knots, signs, slopes, intercept = logit_fit()
    v = np.arange(256) / 255.0
    hinges = np.maximum(signs[None, :] * (v[:, None] - knots[None, :]), 0.0).astype(np.float32)
    logits = np.float32(intercept) + hinges @ slopes.astype(np.float32)
    output = (1.0 / (1.0 + np.exp(-logits.astype(np.float64)))).astype(np.float32)
    assert np.array_equal((output * 255).astype(np.uint8), np.arange(256))


def test_bump_is_centred_on_the_avatar_mouth():
    rows, cols = decoded_bump_profiles()
    assert 150 <= rows.argmax() <= 166
    assert 152 <= cols.argmax() <= 168


def test_silence_gives_zero_features(encoder):
    features_ = _encode(encoder, _level_windows([-4.0]))
    assert features_.shape == (1, 512)
    assert not features_.any()


def test_silent_audio_passes_the_face_through(encoder, unet, faces):
    silent = _encode(encoder, _level_windows([-4.0]))[0]
    prediction, reference = _render(unet, faces, [_steady_block(silent)] * len(faces))
    assert _psnr(prediction, reference) >= MIN_PSNR
    # The logit is fitted so that the reference's truncating uint8 conversion gives back the input exactly.
    assert np.mean(prediction == reference) > 0.999
    assert np.all(_mouth_drop(prediction, reference) <= 0.5)


def test_loud_audio_opens_a_dark_mouth_and_leaves_the_rest(encoder, unet, faces):
    loud = _encode(encoder, _level_windows([-0.5]))[0]
    prediction, reference = _render(unet, faces, [_steady_block(loud)] * len(faces))
    assert np.all(_mouth_drop(prediction, reference) >= MIN_LOUD_DROP)
    assert _psnr(_outside_mouth(prediction), _outside_mouth(reference)) >= MIN_PSNR
    # The mouth's centre goes dark.
    assert np.all(_luminance(prediction[:, 155:165, 150:170]).mean((1, 2)) < 90)


def test_darkness_grows_monotonically_with_loudness(encoder, unet, faces):
    levels = [-3.0, -2.0, -1.5, -1.0, -0.5, 0.0]
    loudness = _encode(encoder, _level_windows(levels))
    assert np.all(np.diff(loudness.max(axis=1)) >= 0)
    face = np.repeat(faces[:1], len(levels), axis=0)
    prediction, reference = _render(unet, face, [_steady_block(f) for f in loudness])
    drops = _mouth_drop(prediction, reference)
    assert drops[0] <= 0.5  # quiet: still closed
    assert np.all(np.diff(drops) >= -0.5)
    assert drops[-1] >= MIN_LOUD_DROP
    assert drops[-2] > drops[1] + MIN_LOUD_DROP / 2


def test_mouth_follows_the_centre_time_steps(encoder, unet, faces):
    """A loud row at time step 8 (the frame's own window) opens the mouth; one at step 0 or 15 does not."""
    loud = _encode(encoder, _level_windows([-0.5]))[0]
    blocks = []
    for step in (8, 0, 15):
        table = np.zeros((16, 512), np.float32)
        table[step] = loud
        blocks.append(features.frame_blocks(table, [8])[0])
    prediction, reference = _render(unet, np.repeat(faces[:1], 3, axis=0), blocks)
    drops = _mouth_drop(prediction, reference)
    assert drops[0] >= MIN_LOUD_DROP
    assert np.all(drops[1:] <= 0.5)


def test_speech_windows_span_closed_to_open(shared_dir, encoder, unet, faces):
    mel = np.load(shared_dir / "golden" / "mel" / "speech_20s_16k_mel.npy")
    windows = features.encoder_windows(mel)[:, 0]
    loudness = _encode(encoder, windows).max(axis=1)
    order = np.argsort(loudness)
    quiet, loud = windows[order[len(order) // 10]], windows[order[-1]]
    encoded = _encode(encoder, np.stack([quiet, loud]))
    prediction, reference = _render(unet, faces[:2], [_steady_block(f) for f in encoded])
    drops = _mouth_drop(prediction, reference)
    assert drops[0] <= 0.5
    assert drops[1] >= MIN_LOUD_DROP
