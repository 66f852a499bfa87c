"""The UNet with its input and output work inside the graph: uint8 328 crops in, uint8 predictions out.

The wrapper graph does what ``model_input.visual_input`` and ``prediction_to_uint8`` do on the host, with the same
float32 arithmetic (Cast, Div by 255 - a division, as the reference - the mask as a multiplication by 0/1, x 255,
Cast to uint8, which truncates), so its predictions are bit-identical; on a GPU that work runs there and a quarter
of the bytes cross the bus. A second output, the sum of the float output, is NaN when any output is. Built once
per UNet file and cached beside the package's other variants.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lipsync_render.contract import CROP_SIZE, ROI_OFFSET, ROI_SIZE
from lipsync_render.model_input import MASK_COLS, MASK_ROWS
from lipsync_render.package import Package, sha256_file
from lipsync_render.package.cache import cache_path

WRAPPER_VERSION = 1
CROPS, PREDICTION, CHECKSUM = "lipsync_uint8_crops", "lipsync_uint8_prediction", "lipsync_output_sum"


def uint8_unet(package: Package, unet: Path) -> Path:
    """The cached wrapper of the UNet file ``unet`` (the package's, or one of its precision variants)."""
    from lipsync_render.runtimes.ort.variants import write_atomically

    digest = sha256_file(unet)[:16]
    target = cache_path(package, f"unet.uint8io.v{WRAPPER_VERSION}.{digest}.onnx")
    if not target.exists():
        write_atomically(target, lambda tmp: _write_wrapper(unet, tmp))
    return target


def _write_wrapper(unet: Path, target: Path) -> None:
    import onnx

    onnx.save(wrap(onnx.load(str(unet))), str(target))


def wrap(model):
    """The model (visual input first, as the contract says) wrapped for uint8 crops and predictions."""
    from onnx import TensorProto, helper, numpy_helper

    graph = model.graph
    initializers = {t.name for t in graph.initializer}
    visual = next(v for v in graph.input if v.name not in initializers)
    batch = visual.type.tensor_type.shape.dim[0]
    batch_dim = batch.dim_value if batch.HasField("dim_value") else (batch.dim_param or "batch")
    output = graph.output[0].name
    mask = np.ones((1, 1, ROI_SIZE, ROI_SIZE), np.float32)
    mask[..., MASK_ROWS, MASK_COLS] = 0

    def name(suffix: str) -> str:
        return f"lipsync_uint8/{suffix}"

    constants = {
        name("starts"): np.array([ROI_OFFSET, ROI_OFFSET], np.int64),
        name("ends"): np.array([ROI_OFFSET + ROI_SIZE, ROI_OFFSET + ROI_SIZE], np.int64),
        name("axes"): np.array([1, 2], np.int64),
        name("255"): np.array(255, np.float32),
        name("mask"): mask,
    }
    node = helper.make_node
    before = [
        node("Slice", [CROPS, name("starts"), name("ends"), name("axes")], [name("roi")]),
        node("Transpose", [name("roi")], [name("roi_chw")], perm=[0, 3, 1, 2]),
        node("Cast", [name("roi_chw")], [name("roi_float")], to=TensorProto.FLOAT),
        node("Div", [name("roi_float"), name("255")], [name("face")]),
        node("Mul", [name("face"), name("mask")], [name("masked")]),
        node("Concat", [name("face"), name("masked")], [visual.name], axis=1),
    ]
    after = [
        node("Mul", [output, name("255")], [name("scaled")]),
        node("Transpose", [name("scaled")], [name("scaled_hwc")], perm=[0, 2, 3, 1]),
        node("Cast", [name("scaled_hwc")], [PREDICTION], to=TensorProto.UINT8),
        node("ReduceSum", [output], [CHECKSUM], keepdims=0),
    ]
    nodes = [*before, *graph.node, *after]
    del graph.node[:]
    graph.node.extend(nodes)
    graph.initializer.extend(numpy_helper.from_array(value, key) for key, value in constants.items())
    inputs = [v for v in graph.input if v.name != visual.name]
    del graph.input[:]
    graph.input.extend(
        [helper.make_tensor_value_info(CROPS, TensorProto.UINT8, [batch_dim, CROP_SIZE, CROP_SIZE, 3]), *inputs]
    )
    del graph.output[:]
    graph.output.extend(
        [
            helper.make_tensor_value_info(PREDICTION, TensorProto.UINT8, [batch_dim, ROI_SIZE, ROI_SIZE, 3]),
            helper.make_tensor_value_info(CHECKSUM, TensorProto.FLOAT, []),
        ]
    )
    return model
