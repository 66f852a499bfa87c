"""The onnx-free reader the package checks use reads what onnx.load reads, and refuses what is not a model."""

from __future__ import annotations

import numpy as np
import onnx
import onnx.defs
import pytest
from onnx import TensorProto, helper, numpy_helper

from lipsync_render.onnx_graph import EXTERNAL, read_graph
from lipsync_render.onnx_ops import NEWEST_OPSET, STANDARD_OPS
from lipsync_render.synth.avatar import build_models


def onnx_view(model: onnx.ModelProto):
    """What read_graph gives, computed with onnx itself."""

    def graphs(graph):
        yield graph
        for node in graph.node:
            for attribute in node.attribute:
                for sub in (*([attribute.g] if attribute.HasField("g") else []), *attribute.graphs):
                    yield from graphs(sub)

    def dims(info):
        return [
            (d.dim_value, "") if d.HasField("dim_value") else (None, d.dim_param)
            for d in info.type.tensor_type.shape.dim
        ]

    return [
        (
            [(n.op_type, n.domain) for n in g.node],
            [(t.name, t.data_location, [(e.key, e.value) for e in t.external_data]) for t in g.initializer],
            [(v.name, dims(v)) for v in g.input],
            [(v.name, dims(v)) for v in g.output],
        )
        for g in graphs(model.graph)
    ]


def reader_view(path):
    return [
        (
            [(n.op_type, n.domain) for n in g.nodes],
            [(t.name, t.data_location, t.external_data) for t in g.initializers],
            [(v.name, [(d.value, d.param) for d in v.dims]) for v in g.inputs],
            [(v.name, [(d.value, d.param) for d in v.dims]) for v in g.outputs],
        )
        for g in read_graph(path).walk()
    ]


def with_subgraph() -> onnx.ModelProto:
    """An If whose branches are graphs, a symbolic and a negative dim, a custom-domain node."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", -1, 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    branch = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])], "branch", [], [helper.make_tensor_value_info("y", 1, [2])]
    )
    cond = helper.make_tensor("cond", TensorProto.BOOL, [], [True])
    weights = numpy_helper.from_array(np.ones((4, 4), np.float32), "w")
    nodes = [
        helper.make_node("If", ["cond"], ["y"], then_branch=branch, else_branch=branch),
        helper.make_node("MagicFace", ["x"], ["z"], domain="com.example.faces"),
    ]
    return helper.make_model(helper.make_graph(nodes, "g", [x], [y], [weights, cond]))


@pytest.mark.parametrize("tiny", [True, False])
def test_the_synthetic_models_read_as_onnx_reads_them(tmp_path, tiny):
    for index, data in enumerate(build_models(seed=0, tiny=tiny, weights="random")):
        path = tmp_path / f"model{index}.onnx"
        path.write_bytes(data)
        assert reader_view(path) == onnx_view(onnx.load(str(path), load_external_data=False))


def test_subgraphs_symbolic_dims_and_external_data_read_as_onnx_reads_them(tmp_path):
    path = tmp_path / "sub.onnx"
    onnx.save(with_subgraph(), str(path))
    assert reader_view(path) == onnx_view(onnx.load(str(path)))
    model = onnx.load(str(path))
    onnx.save(model, str(path), save_as_external_data=True, location="w.bin", size_threshold=0)
    view = reader_view(path)
    assert view == onnx_view(onnx.load(str(path), load_external_data=False))
    assert view[0][1][0][1] == EXTERNAL and ("location", "w.bin") in view[0][1][0][2]


@pytest.mark.parametrize(
    "data",
    [b"", b"\x08", b"\x3a\x05abc", b"not an onnx model at all", b"\x3a\x02\x0a\xff", b"\x3b\x00", b"\x00\x00"],
)
def test_what_is_not_a_model_is_a_value_error(tmp_path, data):
    path = tmp_path / "bad.onnx"
    path.write_bytes(data)
    with pytest.raises(ValueError):
        read_graph(path)


def test_nested_subgraphs_are_bounded(tmp_path):
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g", [], [])
    for _ in range(30):
        graph = helper.make_graph([helper.make_node("Loop", [], [], body=graph)], "g", [], [])
    path = tmp_path / "deep.onnx"
    path.write_bytes(helper.make_model(graph).SerializeToString())
    with pytest.raises(ValueError, match="nested too deeply"):
        read_graph(path)


def test_the_operator_list_holds_every_standard_operator_of_the_installed_onnx():
    known = {s.name for s in onnx.defs.get_all_schemas_with_history() if s.domain in ("", "ai.onnx")}
    assert known <= STANDARD_OPS, f"add to lipsync_render/onnx_ops.py: {sorted(known - STANDARD_OPS)}"
    assert all(onnx.defs.has(name) for name in STANDARD_OPS)
    assert onnx.defs.onnx_opset_version() == NEWEST_OPSET, "update NEWEST_OPSET in lipsync_render/onnx_ops.py"
