"""ONNX graphs of the true UNet-328 (ave) and AVE encoder: size, cost, I/O contract, conv names, tiny stand-ins."""

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from lipsync_render.contract import count_parameters
from lipsync_render.synth.architectures import (
    OPSET,
    RESIDUAL_BRANCH_CONVS,
    RandomWeights,
    build_encoder,
    build_unet,
    conv_macs,
)

# Spec §4.4 / §2. "Trainable" counts torch parameters incl. BatchNorm gamma/beta; "folded" counts the float
# elements of conv weights + biases once each BatchNorm is folded into its conv.
UNET_TRAINABLE = 12_186_935
UNET_FOLDED = 12_153_887
UNET_MACS = 4.886e9
ENCODER_TRAINABLE = 2_812_672
ENCODER_FOLDED = 2_808_256
ENCODER_MACS = 93.09e6


class RecordingWeights(RandomWeights):
    """Random weights that remember every request, in build order."""

    def __init__(self):
        super().__init__(seed=0)
        self.requests: dict[str, tuple[int, int, int, int]] = {}

    def conv(self, name, cout, cin_per_group, k, groups):
        assert name not in self.requests, f"conv name requested twice: {name}"
        self.requests[name] = (cout, cin_per_group, k, groups)
        return super().conv(name, cout, cin_per_group, k, groups)


@pytest.fixture(scope="module")
def unet_weights():
    return RecordingWeights()


@pytest.fixture(scope="module")
def unet(unet_weights):
    return build_unet(unet_weights)


@pytest.fixture(scope="module")
def encoder_weights():
    return RecordingWeights()


@pytest.fixture(scope="module")
def encoder(encoder_weights):
    return build_encoder(encoder_weights)


def session(model):
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def io_spec(values):
    """[(name, elem_type, [dim_param or dim_value, ...])] of graph inputs or outputs."""
    return [
        (v.name, v.type.tensor_type.elem_type, [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim])
        for v in values
    ]


def conv_nodes(model):
    return [n for n in model.graph.node if n.op_type == "Conv"]


def bn_fold_surplus(model, convs_with_bias_and_bn=()):
    """Trainable minus folded params: every conv but `unet.outc` had a BN (gamma+beta replace its folded bias);
    convs that had both a bias and a BN carry one more cout."""
    dims = {t.name: t.dims for t in model.graph.initializer}
    couts = {n.name: dims[n.input[1]][0] for n in conv_nodes(model)}
    with_bn = sum(c for name, c in couts.items() if name != "unet.outc")
    return with_bn + sum(couts[name] for name in convs_with_bias_and_bn)


# ------------------------------------------------------------------------------------------------ UNet


def test_unet_graph_is_valid_opset17_with_folded_bn(unet):
    onnx.checker.check_model(unet, full_check=True)
    assert [o.version for o in unet.opset_import if o.domain in ("", "ai.onnx")] == [OPSET]
    assert all(len(n.input) == 3 for n in conv_nodes(unet)), "every conv carries weight + bias"
    assert not [n for n in unet.graph.node if n.op_type == "BatchNormalization"]
    resizes = [n for n in unet.graph.node if n.op_type == "Resize"]
    assert len(resizes) == 5
    for node in resizes:
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        assert attrs == {"mode": b"linear", "coordinate_transformation_mode": b"align_corners"}


def test_unet_io_contract(unet):
    f = onnx.TensorProto.FLOAT
    assert io_spec(unet.graph.input) == [("input", f, ["batch", 6, 320, 320]), ("audio", f, ["batch", 32, 16, 16])]
    assert io_spec(unet.graph.output) == [("output", f, ["batch", 3, 320, 320])]


def test_unet_parameter_count(unet):
    # Folded: conv weights + biases. Trainable adds back BN gamma/beta; audio conv3/conv5 had bias and BN.
    assert count_parameters(unet) == UNET_FOLDED
    surplus = bn_fold_surplus(unet, convs_with_bias_and_bn=("unet.audio.conv3", "unet.audio.conv5"))
    assert UNET_FOLDED + surplus == UNET_TRAINABLE


def test_unet_conv_macs(unet):
    assert conv_macs(unet) == pytest.approx(UNET_MACS, rel=0.005)


def test_unet_runs_at_batch_2_and_uses_audio(unet):
    rng = np.random.default_rng(1)
    visual = np.repeat(rng.random((1, 6, 320, 320), dtype=np.float32), 2, axis=0)
    audio = rng.random((2, 32, 16, 16), dtype=np.float32)  # same face, two different audio windows
    (out,) = session(unet).run(None, {"input": visual, "audio": audio})
    assert out.shape == (2, 3, 320, 320) and out.dtype == np.float32
    assert 0.1 < out.mean() < 0.9 and out.std() > 0.01, "random weights saturate the sigmoid"
    assert np.abs(out[0] - out[1]).max() > 1e-4, "output ignores the audio input"


def test_unet_conv_names(unet_weights, unet):
    requests = unet_weights.requests
    assert {k: v for k, v in requests.items() if k.startswith("unet.up5.")} == {
        "unet.up5.conv1.expand": (128, 64, 1, 1),
        "unet.up5.conv1.depthwise": (128, 1, 3, 128),
        "unet.up5.conv1.project": (16, 128, 1, 1),
        "unet.up5.conv2.expand": (32, 16, 1, 1),
        "unet.up5.conv2.depthwise": (32, 1, 3, 32),
        "unet.up5.conv2.project": (16, 32, 1, 1),
    }
    assert requests["unet.outc"] == (3, 16, 1, 1)
    assert requests["unet.audio.conv3"] == (256, 128, 3, 1)
    assert requests["unet.audio.conv5"] == (512, 256, 3, 1)
    assert requests["unet.fuse1.conv1.expand"] == (2048, 1024, 1, 1)
    stages = {name.split(".")[1] for name in requests}
    assert stages == {"inc", "audio", "fuse1", "fuse2", "outc"} | {f"down{i}" for i in range(1, 6)} | {
        f"up{i}" for i in range(1, 6)
    }
    # The graph's conv nodes, tensors and initializers are named after the requested convs.
    assert [n.name for n in conv_nodes(unet)] == list(requests)
    assert [n.input[1:] for n in conv_nodes(unet)] == [[f"{k}.weight", f"{k}.bias"] for k in requests]


def residual_convs(model):
    """Convs feeding the branch side (second input) of a residual Add."""
    return {n.input[1] for n in model.graph.node if n.op_type == "Add" and n.name.endswith(".add")}


def test_residual_branch_names_match_graph(unet, encoder):
    assert residual_convs(unet) | residual_convs(encoder) == RESIDUAL_BRANCH_CONVS


# --------------------------------------------------------------------------------------------- encoder


def test_encoder_graph_and_io_contract(encoder):
    onnx.checker.check_model(encoder, full_check=True)
    f = onnx.TensorProto.FLOAT
    assert io_spec(encoder.graph.input) == [("mel_spectrogram", f, ["batch_size", 1, 80, 16])]
    assert io_spec(encoder.graph.output) == [("audio_features", f, ["batch_size", 512])]
    assert all(len(n.input) == 3 for n in conv_nodes(encoder))


def test_encoder_conv_names(encoder_weights):
    assert list(encoder_weights.requests) == [f"enc.block{i}" for i in range(1, 14)]
    assert encoder_weights.requests["enc.block12"] == (512, 256, 3, 1)


def test_encoder_parameter_count_and_macs(encoder):
    # Every encoder conv had a bias and a BN, so folding dropped 2*cout floats per conv.
    assert count_parameters(encoder) == ENCODER_FOLDED
    surplus = bn_fold_surplus(encoder, convs_with_bias_and_bn=[n.name for n in conv_nodes(encoder)])
    assert ENCODER_FOLDED + surplus == ENCODER_TRAINABLE
    assert conv_macs(encoder) == pytest.approx(ENCODER_MACS, rel=0.005)


def test_encoder_runs_at_batch_2(encoder):
    mel = np.random.default_rng(2).uniform(-4, 4, (2, 1, 80, 16)).astype(np.float32)
    (features,) = session(encoder).run(None, {"mel_spectrogram": mel})
    assert features.shape == (2, 512) and features.dtype == np.float32
    assert features.min() >= 0 and features.std() > 0.01
    assert not np.allclose(features[0], features[1])


# ------------------------------------------------------------------------------------------------ tiny


def test_tiny_models_share_the_io_contract(unet, encoder):
    tiny_unet = build_unet(RandomWeights(0), tiny=True)
    tiny_encoder = build_encoder(RandomWeights(0), tiny=True)
    for tiny, full in ((tiny_unet, unet), (tiny_encoder, encoder)):
        onnx.checker.check_model(tiny, full_check=True)
        assert io_spec(tiny.graph.input) == io_spec(full.graph.input)
        assert io_spec(tiny.graph.output) == io_spec(full.graph.output)
        assert conv_macs(tiny) < 0.001 * conv_macs(full)


def test_tiny_unet_runs_and_depends_on_both_inputs():
    run = session(build_unet(RandomWeights(0), tiny=True)).run
    rng = np.random.default_rng(3)
    visual = rng.random((2, 6, 320, 320), dtype=np.float32)
    audio = rng.random((2, 32, 16, 16), dtype=np.float32)
    (out,) = run(None, {"input": visual, "audio": audio})
    assert out.shape == (2, 3, 320, 320) and out.dtype == np.float32
    assert 0.1 < out.mean() < 0.9 and out.std() > 0.01
    assert not np.allclose(run(None, {"input": visual[::-1].copy(), "audio": audio})[0], out)
    assert not np.allclose(run(None, {"input": visual, "audio": audio * 2})[0], out)


def test_tiny_encoder_runs_and_depends_on_input():
    run = session(build_encoder(RandomWeights(0), tiny=True)).run
    mel = np.random.default_rng(4).uniform(-4, 4, (2, 1, 80, 16)).astype(np.float32)
    (features,) = run(None, {"mel_spectrogram": mel})
    assert features.shape == (2, 512) and features.min() >= 0
    assert not np.allclose(run(None, {"mel_spectrogram": mel + 1})[0], features)


# ------------------------------------------------------------------------------------------- weights


def test_random_weights_are_seeded_per_name():
    a, b = RandomWeights(7), RandomWeights(7)
    w1, b1 = a.conv("unet.inc.expand", 12, 6, 1, 1)
    a.conv("unet.outc", 3, 16, 1, 1)  # drawing another conv first must not change the next one
    w2, b2 = b.conv("unet.inc.expand", 12, 6, 1, 1)
    assert w1.dtype == np.float32 and w1.shape == (12, 6, 1, 1) and b1.shape == (12,)
    np.testing.assert_array_equal(w1, w2)
    np.testing.assert_array_equal(b1, b2)
    assert not np.array_equal(w1, RandomWeights(8).conv("unet.inc.expand", 12, 6, 1, 1)[0])


def test_wrong_weight_shape_is_rejected():
    class Broken(RandomWeights):
        def conv(self, name, cout, cin_per_group, k, groups):
            weight, bias = super().conv(name, cout, cin_per_group, k, groups)
            return weight[:, :1], bias

    with pytest.raises(ValueError, match=r"tiny\.unet\.audio"):
        build_unet(Broken(), tiny=True)
