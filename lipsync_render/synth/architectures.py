"""ONNX graphs of the SyncTalk_2D networks, built with `onnx.helper` (no torch).

Two models, true architectures (reference spec §2 and §4), opset 17, dynamic batch axis, BatchNorm folded
into the preceding conv so that every conv has a weight and a bias initializer:

- UNet-328, `ave` mode: `input` [batch,6,320,320] + `audio` [batch,32,16,16] -> `output` [batch,3,320,320].
- AVE audio encoder: `mel_spectrogram` [batch_size,1,80,16] -> `audio_features` [batch_size,512].

With `tiny=True` the builders return stand-ins with the same inputs/outputs but trivial cost, for fast tests.

Weights come from a `WeightSource`, asked once per conv by a stable name. Conv names:

- UNet (prefix `unet.`), stages named like the torch modules: `inc`, `down1`..`down5`, `audio`,
  `fuse1`, `fuse2` (the two DoubleConvDW of `fuse_conv`), `up1`..`up5`, `outc`.
- An inverted-residual (IR) block `B` has three convs: `B.expand` (1x1, inp->2*inp), `B.depthwise`
  (3x3, groups = 2*inp, carries the block's stride) and `B.project` (1x1, 2*inp->oup).
- `unet.inc` is a single IR block: `unet.inc.expand`, `unet.inc.depthwise`, `unet.inc.project`.
- Every DoubleConvDW stage (`down*`, `fuse*`, `up*`) holds two IR blocks: `conv1` (stride of the stage,
  no residual) and `conv2` (stride 1, residual), e.g. `unet.down1.conv1.depthwise`, `unet.up5.conv2.project`.
- Audio branch (AudioConvAve): IR blocks `unet.audio.conv1`, `conv2`, `conv4`, `conv6`, `conv7` and
  plain 3x3 convs (+BN+ReLU) `unet.audio.conv3` and `unet.audio.conv5`.
- `unet.outc`: the final 1x1 conv 16->3 (followed by sigmoid).
- Encoder: `enc.block1`..`enc.block13`, one per row of the spec's table (conv+BN, optional residual, ReLU).
- Tiny models: `tiny.unet.visual` (per-channel affine of input channels 0-2, asked for as a 1x1 depthwise conv
  3->3), `tiny.unet.audio` (1x1, 32->3), `tiny.enc.proj` (1x1, 80->512).

Initializers are `<conv name>.weight` and `<conv name>.bias`; `RESIDUAL_BRANCH_CONVS` lists the convs whose
output is added to their block's input.
"""

from __future__ import annotations

import zlib
from typing import Protocol

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from lipsync_render.contract import AUDIO_ENCODER, UNET

OPSET = 17
# IR 8 is what opset 17 shipped with; keeps the files loadable by older ONNX Runtime builds.
IR_VERSION = 8

UNET_CHANNELS = (32, 64, 128, 256, 512)

# (cin, cout, kernel, (stride_h, stride_w), pad, residual); spec §2.
ENCODER_BLOCKS = (
    (1, 32, 3, (1, 1), 1, False),
    (32, 32, 3, (1, 1), 1, True),
    (32, 32, 3, (1, 1), 1, True),
    (32, 64, 3, (3, 1), 1, False),
    (64, 64, 3, (1, 1), 1, True),
    (64, 64, 3, (1, 1), 1, True),
    (64, 128, 3, (3, 3), 1, False),
    (128, 128, 3, (1, 1), 1, True),
    (128, 128, 3, (1, 1), 1, True),
    (128, 256, 3, (3, 2), 1, False),
    (256, 256, 3, (1, 1), 1, True),
    (256, 512, 3, (1, 1), 0, False),
    (512, 512, 1, (1, 1), 0, False),
)

_DOUBLE_CONV_STAGES = (*(f"down{i}" for i in range(1, 6)), "fuse1", "fuse2", *(f"up{i}" for i in range(1, 6)))
# Convs whose output is added to their block's input: a weight source that wants identity blocks zeroes these.
RESIDUAL_BRANCH_CONVS = frozenset(
    [f"unet.{stage}.conv2.project" for stage in _DOUBLE_CONV_STAGES]
    + [f"unet.audio.conv{i}.project" for i in (4, 6, 7)]
    + [f"enc.block{i}" for i, block in enumerate(ENCODER_BLOCKS, start=1) if block[5]]
)


def is_residual_branch(name: str) -> bool:
    """True for a conv whose output is added to its block's input (the last conv of a residual branch)."""
    return name in RESIDUAL_BRANCH_CONVS


class WeightSource(Protocol):
    """Supplies the (BN-folded) parameters of each conv, by name."""

    def conv(self, name: str, cout: int, cin_per_group: int, k: int, groups: int) -> tuple[np.ndarray, np.ndarray]:
        """Return (weight float32 [cout, cin_per_group, k, k], bias float32 [cout])."""
        ...


class RandomWeights:
    """Seeded He-style random weights that keep activations in a sane range through the networks.

    Each conv draws from its own generator seeded by (seed, name), so weights do not depend on build order.
    """

    def __init__(self, seed: int = 0, bias_std: float = 0.02):
        self.seed = seed
        self.bias_std = bias_std

    def conv(self, name: str, cout: int, cin_per_group: int, k: int, groups: int) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng([self.seed, zlib.crc32(name.encode())])
        std = np.sqrt(_random_gain(name) / (cin_per_group * k * k))
        weight = rng.standard_normal((cout, cin_per_group, k, k), dtype=np.float32)
        weight *= np.float32(std)
        bias = rng.standard_normal(cout, dtype=np.float32) * np.float32(self.bias_std)
        return weight, bias


def _random_gain(name: str) -> float:
    """He gain: 2 before a ReLU, 1 for linear outputs, small on residual branches so sums do not grow."""
    if is_residual_branch(name):
        return 0.25
    if name.endswith(".project") or name == "unet.outc":
        return 1.0
    return 2.0


class _Graph:
    """Accumulates nodes and initializers; every conv's parameters come from the weight source."""

    def __init__(self, weights: WeightSource):
        self.weights = weights
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []

    def op(self, op_type: str, inputs: list[str], output: str, **attrs) -> str:
        self.nodes.append(helper.make_node(op_type, inputs, [output], name=output, **attrs))
        return output

    def constant(self, name: str, value: np.ndarray) -> str:
        self.initializers.append(numpy_helper.from_array(value, name))
        return name

    def conv(
        self,
        x: str,
        name: str,
        cin: int,
        cout: int,
        k: int,
        stride: int | tuple[int, int] = 1,
        pad: int = 0,
        groups: int = 1,
    ) -> str:
        weight, bias = self.weights.conv(name, cout, cin // groups, k, groups)
        weight = np.asarray(weight, dtype=np.float32)
        bias = np.asarray(bias, dtype=np.float32)
        if weight.shape != (cout, cin // groups, k, k) or bias.shape != (cout,):
            raise ValueError(
                f"weights for {name}: got {weight.shape}/{bias.shape}, expected {(cout, cin // groups, k, k)}/{(cout,)}"
            )
        strides = list(stride) if isinstance(stride, tuple) else [stride, stride]
        return self.op(
            "Conv",
            [x, self.constant(f"{name}.weight", weight), self.constant(f"{name}.bias", bias)],
            name,
            kernel_shape=[k, k],
            strides=strides,
            pads=[pad] * 4,
            group=groups,
        )

    def relu(self, x: str) -> str:
        return self.op("Relu", [x], f"{x}.relu")

    def add(self, shortcut: str, branch: str, name: str) -> str:
        return self.op("Add", [shortcut, branch], name)


# ---------------------------------------------------------------------------------------------- UNet


def _inverted_residual(g: _Graph, x: str, name: str, inp: int, oup: int, stride: int, residual: bool) -> str:
    hidden = inp * 2
    h = g.relu(g.conv(x, f"{name}.expand", inp, hidden, 1))
    h = g.relu(g.conv(h, f"{name}.depthwise", hidden, hidden, 3, stride=stride, pad=1, groups=hidden))
    h = g.conv(h, f"{name}.project", hidden, oup, 1)
    return g.add(x, h, f"{name}.add") if residual else h


def _double_conv_dw(g: _Graph, x: str, name: str, inp: int, oup: int, stride: int) -> str:
    x = _inverted_residual(g, x, f"{name}.conv1", inp, oup, stride, residual=False)
    return _inverted_residual(g, x, f"{name}.conv2", oup, oup, 1, residual=True)


def _up(g: _Graph, x: str, skip: str, name: str, inp: int, oup: int, scales: str) -> str:
    # Bilinear x2 with align_corners=True, as torch exports nn.Upsample; sizes match the skip exactly.
    up = g.op(
        "Resize",
        [x, "", scales],
        f"{name}.upsample",
        mode="linear",
        coordinate_transformation_mode="align_corners",
    )
    cat = g.op("Concat", [up, skip], f"{name}.concat", axis=1)
    return _double_conv_dw(g, cat, name, inp, oup, 1)


def _audio_conv_ave(g: _Graph, x: str) -> str:
    """AudioConvAve: [32,16,16] -> [512,10,10]."""
    ch = UNET_CHANNELS
    x = _inverted_residual(g, x, "unet.audio.conv1", ch[0], ch[1], 1, residual=False)
    x = _inverted_residual(g, x, "unet.audio.conv2", ch[1], ch[2], 1, residual=False)
    x = g.relu(g.conv(x, "unet.audio.conv3", ch[2], ch[3], 3, stride=1, pad=1))
    x = _inverted_residual(g, x, "unet.audio.conv4", ch[3], ch[3], 1, residual=True)
    # Padding 3 with stride 2 turns 16x16 into 10x10, the visual bottleneck size.
    x = g.relu(g.conv(x, "unet.audio.conv5", ch[3], ch[4], 3, stride=2, pad=3))
    x = _inverted_residual(g, x, "unet.audio.conv6", ch[4], ch[4], 1, residual=True)
    return _inverted_residual(g, x, "unet.audio.conv7", ch[4], ch[4], 1, residual=True)


def _unet_body(g: _Graph, visual: str, audio: str) -> str:
    ch = UNET_CHANNELS
    x1 = _inverted_residual(g, visual, "unet.inc", 6, ch[0], 1, residual=False)
    x2 = _double_conv_dw(g, x1, "unet.down1", ch[0], ch[0], 2)
    x3 = _double_conv_dw(g, x2, "unet.down2", ch[0], ch[1], 2)
    x4 = _double_conv_dw(g, x3, "unet.down3", ch[1], ch[2], 2)
    x5 = _double_conv_dw(g, x4, "unet.down4", ch[2], ch[3], 2)
    x6 = _double_conv_dw(g, x5, "unet.down5", ch[3], ch[4], 2)

    a = _audio_conv_ave(g, audio)
    x = g.op("Concat", [x6, a], "unet.fuse.concat", axis=1)
    x = _double_conv_dw(g, x, "unet.fuse1", ch[4] * 2, ch[4], 1)
    x = _double_conv_dw(g, x, "unet.fuse2", ch[4], ch[3], 1)

    scales = g.constant("unet.upsample_scales", np.array([1, 1, 2, 2], dtype=np.float32))
    x = _up(g, x, x5, "unet.up1", ch[4], ch[3] // 2, scales)
    x = _up(g, x, x4, "unet.up2", ch[3], ch[2] // 2, scales)
    x = _up(g, x, x3, "unet.up3", ch[2], ch[1] // 2, scales)
    x = _up(g, x, x2, "unet.up4", ch[1], ch[0], scales)
    x = _up(g, x, x1, "unet.up5", ch[1], ch[0] // 2, scales)
    return g.conv(x, "unet.outc", ch[0] // 2, 3, 1)


def _tiny_unet_body(g: _Graph, visual: str, audio: str) -> str:
    """Per-channel affine of the unmasked face (channels 0-2) plus a per-item offset from the pooled audio.

    Elementwise ops on purpose: a 1x1 conv over the 6 channels cost 2.1 ms a frame on the CPU, this 0.26 ms,
    and the tiny model stands for "no UNet cost" in the pipeline ceilings.
    """
    weight, bias = g.weights.conv("tiny.unet.visual", 3, 1, 1, 3)
    weight, bias = np.asarray(weight, np.float32), np.asarray(bias, np.float32)
    if weight.shape != (3, 1, 1, 1) or bias.shape != (3,):
        raise ValueError(f"weights for tiny.unet.visual: got {weight.shape}/{bias.shape}, expected (3, 1, 1, 1)/(3,)")
    face = g.op(
        "Slice",
        [
            visual,
            g.constant("tiny.unet.first", np.array([0], np.int64)),
            g.constant("tiny.unet.last", np.array([3], np.int64)),
            g.constant("tiny.unet.axis", np.array([1], np.int64)),
        ],
        "tiny.unet.face",
    )
    scaled = g.op("Mul", [face, g.constant("tiny.unet.visual.weight", weight.reshape(1, 3, 1, 1))], "tiny.unet.scaled")
    v = g.op("Add", [scaled, g.constant("tiny.unet.visual.bias", bias.reshape(1, 3, 1, 1))], "tiny.unet.visual")
    pooled = g.op("GlobalAveragePool", [audio], "tiny.unet.audio_pool")
    a = g.conv(pooled, "tiny.unet.audio", 32, 3, 1)
    return g.op("Add", [v, a], "tiny.unet.add")


def build_unet(weights: WeightSource, tiny: bool = False) -> onnx.ModelProto:
    """UNet-328 (`ave` mode): `input` [batch,6,320,320], `audio` [batch,32,16,16] -> `output` [batch,3,320,320]."""
    g = _Graph(weights)
    body = _tiny_unet_body if tiny else _unet_body
    logits = body(g, "input", "audio")
    g.op("Sigmoid", [logits], "output")
    return _model(
        g,
        "synctalk2d_unet328_ave" + ("_tiny" if tiny else ""),
        inputs=[("input", ["batch", *UNET.inputs[0]]), ("audio", ["batch", *UNET.inputs[1]])],
        outputs=[("output", ["batch", *UNET.output])],
    )


# ------------------------------------------------------------------------------------------- encoder


def _encoder_body(g: _Graph, mel: str) -> str:
    x = mel
    for i, (cin, cout, k, stride, pad, residual) in enumerate(ENCODER_BLOCKS, start=1):
        name = f"enc.block{i}"
        y = g.conv(x, name, cin, cout, k, stride=stride, pad=pad)
        if residual:
            y = g.add(x, y, f"{name}.add")
        x = g.relu(y)
    return x


def _tiny_encoder_body(g: _Graph, mel: str) -> str:
    """Time-average each mel bin, then one 1x1 conv 80->512 and ReLU."""
    bins_first = g.op("Transpose", [mel], "tiny.enc.transpose", perm=[0, 2, 1, 3])
    pooled = g.op("GlobalAveragePool", [bins_first], "tiny.enc.pool")
    return g.relu(g.conv(pooled, "tiny.enc.proj", 80, 512, 1))


def build_encoder(weights: WeightSource, tiny: bool = False) -> onnx.ModelProto:
    """AVE audio encoder: `mel_spectrogram` [batch_size,1,80,16] -> `audio_features` [batch_size,512] (>= 0)."""
    g = _Graph(weights)
    body = _tiny_encoder_body if tiny else _encoder_body
    features = body(g, "mel_spectrogram")
    g.op("Flatten", [features], "audio_features", axis=1)
    return _model(
        g,
        "ave_audio_encoder" + ("_tiny" if tiny else ""),
        inputs=[("mel_spectrogram", ["batch_size", *AUDIO_ENCODER.inputs[0]])],
        outputs=[("audio_features", ["batch_size", *AUDIO_ENCODER.output])],
    )


# --------------------------------------------------------------------------------------------- shared


def _model(g: _Graph, name: str, inputs, outputs) -> onnx.ModelProto:
    def value_infos(specs):
        return [helper.make_tensor_value_info(n, TensorProto.FLOAT, shape) for n, shape in specs]

    graph = helper.make_graph(g.nodes, name, value_infos(inputs), value_infos(outputs), g.initializers)
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="lipsync-render",
    )
    model.ir_version = IR_VERSION
    return model


def conv_macs(model: onnx.ModelProto) -> int:
    """Multiply-accumulates of all Conv nodes for one batch item: sum of Cout*(Cin/groups)*k*k*Hout*Wout.

    Output sizes come from ONNX shape inference; raises ValueError if a conv's output shape is unknown.
    """
    inferred = onnx.shape_inference.infer_shapes(model)
    shapes = {
        v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
        for v in [*inferred.graph.value_info, *inferred.graph.output]
    }
    shapes.update({t.name: list(t.dims) for t in model.graph.initializer})
    total = 0
    for node in model.graph.node:
        if node.op_type != "Conv":
            continue
        out_shape = shapes.get(node.output[0])
        if not out_shape or len(out_shape) != 4 or 0 in out_shape[2:]:
            raise ValueError(f"unknown output shape for conv {node.name}")
        total += int(np.prod(shapes[node.input[1]])) * out_shape[2] * out_shape[3]
    return total
