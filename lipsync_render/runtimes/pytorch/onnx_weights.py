"""The package's ONNX weights in the torch networks: each graph Conv mapped to the architecture's conv, checked.

The mapping follows the graph, not initializer names (a user's export names them its own way): the UNet's Conv
nodes are split by the graph inputs they read (face only, audio only, both); each part is one chain whose order
is the topological order of the nodes, and must match the fixed architecture's convs one for one in shape,
stride, padding and groups. Anything else is not the architecture this backend builds, and is refused.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from lipsync_render.contract import UNET, ModelContract
from lipsync_render.errors import PackageError
from lipsync_render.runtimes.pytorch import networks

TINY_MARKERS = {"unet": "tiny.unet.visual.weight", "encoder": "tiny.enc.proj.weight"}


def network_from_onnx(path: Path, contract: ModelContract) -> nn.Module:
    """The torch network of the package's ONNX model at ``path`` (UNet or audio encoder), weights loaded."""
    import onnx

    try:
        model = onnx.load(str(path))
    except Exception as exc:  # onnx raises several unrelated types for a damaged file
        raise PackageError(f"The {contract.label} model {path} cannot be read ({type(exc).__name__}).") from None
    values = _constant_values(model.graph)
    if TINY_MARKERS[contract.key] in values:
        return _tiny_network(values, contract)
    where = f"The {contract.label} model {path}"
    if any(node.op_type == "BatchNormalization" for node in model.graph.node):
        raise PackageError(f"{where} keeps BatchNorm unfolded, which the torch backend does not map; {_ADVICE}")
    convs = [node for node in model.graph.node if node.op_type == "Conv"]
    if contract is UNET:
        network = networks.folded_unet()
        parts = _parts(model.graph, convs)
        for part, stages in networks.UNET_PARTS.items():
            _load_chain(parts[part], networks.convs_in_order(network, stages), values, f"{where} ({part} part)")
    else:
        network = networks.folded_audio_encoder()
        _load_chain(convs, networks.convs_in_order(network), values, where)
    return network.eval()


_ADVICE = "render it with --backend onnxruntime."


def _constant_values(graph) -> dict[str, np.ndarray]:
    """Initializers and Constant-node outputs by name (Identity of a constant included)."""
    from onnx import numpy_helper

    values = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            values[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
        elif node.op_type == "Identity" and node.input[0] in values:
            values[node.output[0]] = values[node.input[0]]
    return values


def _parts(graph, convs) -> dict[str, list]:
    """The UNet's Conv nodes by the graph inputs they depend on: 'visual' (input 0), 'audio' (input 1), 'both'."""
    initializers = {t.name for t in graph.initializer}
    inputs = [v.name for v in graph.input if v.name not in initializers]
    reads = {inputs[0]: {"visual"}, inputs[1]: {"audio"}}
    for node in graph.node:  # ONNX keeps nodes in topological order
        depends = set().union(*(reads.get(name, set()) for name in node.input))
        for output in node.output:
            reads[output] = depends
    parts = {"visual": [], "audio": [], "both": []}
    for node in convs:
        depends = reads.get(node.output[0], set())
        parts["both" if depends == {"visual", "audio"} else next(iter(depends), "both")].append(node)
    return parts


def _load_chain(nodes: list, convs: list[nn.Conv2d], values: dict, where: str) -> None:
    """Copy each node's weight and bias into the matching conv, after checking that the two are the same layer."""
    if len(nodes) != len(convs):
        raise PackageError(
            f"{where} has {len(nodes)} convolutions where the SyncTalk_2D architecture has {len(convs)}; {_ADVICE}"
        )
    for number, (node, conv) in enumerate(zip(nodes, convs), start=1):
        attrs = {a.name: list(a.ints) if a.ints else a.i for a in node.attribute}
        weight = values.get(node.input[1])
        bias = values.get(node.input[2]) if len(node.input) > 2 and node.input[2] else np.zeros(conv.out_channels)
        expected = (tuple(conv.weight.shape), list(conv.stride), [*conv.padding, *conv.padding], conv.groups)
        found = (
            None if weight is None else tuple(weight.shape),
            attrs.get("strides", [1, 1]),
            attrs.get("pads", [0, 0, 0, 0]),
            attrs.get("group", 1),
        )
        if (
            found != expected
            or bias is None
            or bias.shape != (conv.out_channels,)
            or set(attrs.get("dilations", [1])) != {1}
        ):
            raise PackageError(
                f"{where}: convolution {number} ({node.name or node.output[0]}) is weight {found[0]}, strides "
                f"{found[1]}, pads {found[2]}, groups {found[3]} where the SyncTalk_2D architecture has "
                f"{expected[0]}, {expected[1]}, {expected[2]}, {expected[3]}; {_ADVICE}"
            )
        with torch.no_grad():
            conv.weight.copy_(torch.tensor(np.asarray(weight, np.float32)))
            conv.bias.copy_(torch.tensor(np.asarray(bias, np.float32)))


def _tiny_network(values: dict, contract: ModelContract) -> nn.Module:
    """The tiny stand-in of ``synth/architectures.py`` (its initializer names are this project's own)."""

    def tensor(name: str) -> torch.Tensor:
        return torch.tensor(np.asarray(values[name], np.float32))

    try:
        with torch.no_grad():
            if contract is UNET:
                network = networks.TinyUNet()
                network.scale.copy_(tensor("tiny.unet.visual.weight").reshape(1, 3, 1, 1))
                network.shift.copy_(tensor("tiny.unet.visual.bias").reshape(1, 3, 1, 1))
                network.audio.weight.copy_(tensor("tiny.unet.audio.weight"))
                network.audio.bias.copy_(tensor("tiny.unet.audio.bias"))
            else:
                network = networks.TinyEncoder()
                network.proj.weight.copy_(tensor("tiny.enc.proj.weight"))
                network.proj.bias.copy_(tensor("tiny.enc.proj.bias"))
    except (KeyError, RuntimeError):
        raise PackageError(f"The tiny {contract.label} model does not have the tiny stand-in's weights.") from None
    return network.eval()
