"""What the package checks read from an ONNX file, parsed straight from the protobuf wire format, without ``onnx``.

``import onnx`` costs 0.5 s of CPU before anything is read (1.2-2 s wall on the shared 2-core host), nearly all
of it in ``ml_dtypes``' extension, which onnx imports for its type tables: that was a third of what each
``lipsync render`` call paid before its first frame (benchmarks/RESULTS.md, "Start-up"). The model checks
(``contract.check_model``) need only the graph's inputs and outputs with their dims, the nodes' operator types
and domains (subgraphs included) and where initializers keep their data; this reader gets exactly that, skipping
weights by their length without copying them. It reads what ``onnx.load`` would (tests/test_onnx_graph.py
compares them on every test model), and anything that is not well-formed protobuf of that shape is a ValueError.
The standard operator names come from ``onnx_ops`` (checked against ``onnx.defs`` by the tests).
"""

from __future__ import annotations

import mmap
from dataclasses import dataclass, field
from pathlib import Path

MAX_DEPTH = 24  # nested subgraphs: three messages deep each, and protobuf stops at 100 messages
EXTERNAL = 1  # TensorProto.DataLocation.EXTERNAL


@dataclass
class Dim:
    value: int | None = None  # dim_value when set
    param: str = ""


@dataclass
class ValueInfo:
    name: str = ""
    dims: list[Dim] = field(default_factory=list)


@dataclass
class Tensor:
    name: str = ""
    data_location: int = 0
    external_data: list[tuple[str, str]] = field(default_factory=list)  # (key, value) entries, in order


@dataclass
class Node:
    op_type: str = ""
    domain: str = ""
    subgraphs: list[Graph] = field(default_factory=list)


@dataclass
class Graph:
    nodes: list[Node] = field(default_factory=list)
    initializers: list[Tensor] = field(default_factory=list)
    inputs: list[ValueInfo] = field(default_factory=list)
    outputs: list[ValueInfo] = field(default_factory=list)
    opsets: list[tuple[str, int]] = field(default_factory=list)  # the model's (domain, version) imports

    def walk(self):
        """This graph and every subgraph inside its nodes (If/Loop/Scan bodies)."""
        yield self
        for node in self.nodes:
            for sub in node.subgraphs:
                yield from sub.walk()


def read_graph(path: str | Path) -> Graph:
    """The main graph of the ONNX model at ``path``; ValueError when the file is not one."""
    with open(path, "rb") as file:
        if file.seek(0, 2) == 0:
            raise ValueError("empty file")
        # Mapped, not read: weights are skipped by their length and never copied. The map is closed when the
        # last view of it is collected (closing it here would fail while parser frames still hold views).
        view = memoryview(mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ))
    graph = Graph()
    for number, value in _fields(view):
        if number == 7:  # ModelProto.graph (a message given twice is merged, as protobuf does)
            _graph(value, 0, graph)
        elif number == 8:  # ModelProto.opset_import: OperatorSetIdProto (domain 1, version 2)
            graph.opsets.append(_opset(value))
    return graph


def _varint(data, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise ValueError("truncated or overlong varint")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7


def _fields(data):
    """(field number, value) of a message: an int for varints and fixed-size fields, a memoryview for the rest."""
    pos, end = 0, len(data)
    while pos < end:
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise ValueError("field number 0")
        if wire == 0:
            value, pos = _varint(data, pos)
        elif wire == 2:
            length, pos = _varint(data, pos)
            if pos + length > end:
                raise ValueError("length-delimited field runs past its message")
            value, pos = data[pos : pos + length], pos + length
        elif wire in (1, 5):
            width = 8 if wire == 1 else 4
            if pos + width > end:
                raise ValueError("truncated fixed-size field")
            value, pos = int.from_bytes(data[pos : pos + width], "little"), pos + width
        else:
            raise ValueError(f"unsupported wire type {wire}")
        yield number, value


def _text(value) -> str:
    if isinstance(value, int):
        raise ValueError("a string field holds a number")
    return bytes(value).decode("utf-8", "replace")


def _message(value):
    if isinstance(value, int):
        raise ValueError("a message field holds a number")
    return value


def _graph(data, depth: int, graph: Graph | None = None) -> Graph:
    if depth > MAX_DEPTH:
        raise ValueError("subgraphs nested too deeply")
    graph = Graph() if graph is None else graph
    for number, value in _fields(_message(data)):
        if number == 1:
            graph.nodes.append(_node(value, depth))
        elif number == 5:
            graph.initializers.append(_tensor(value))
        elif number == 11:
            graph.inputs.append(_value_info(value))
        elif number == 12:
            graph.outputs.append(_value_info(value))
    return graph


def _opset(data) -> tuple[str, int]:
    domain, version = "", 0
    for number, value in _fields(_message(data)):
        if number == 1:
            domain = _text(value)
        elif number == 2 and isinstance(value, int):
            version = value
    return domain, version


def _node(data, depth: int) -> Node:
    node = Node()
    for number, value in _fields(_message(data)):
        if number == 4:
            node.op_type = _text(value)
        elif number == 7:
            node.domain = _text(value)
        elif number == 5:  # AttributeProto: g (6) and graphs (11) hold subgraphs
            for attribute_number, attribute_value in _fields(_message(value)):
                if attribute_number in (6, 11):
                    node.subgraphs.append(_graph(attribute_value, depth + 1))
    return node


def _tensor(data) -> Tensor:
    tensor = Tensor()
    for number, value in _fields(_message(data)):
        if number == 8:
            tensor.name = _text(value)
        elif number == 14:
            if not isinstance(value, int):
                raise ValueError("data_location is not a number")
            tensor.data_location = value
        elif number == 13:  # StringStringEntryProto
            entry = {k: _text(v) for k, v in _fields(_message(value)) if k in (1, 2)}
            tensor.external_data.append((entry.get(1, ""), entry.get(2, "")))
    return tensor


def _value_info(data) -> ValueInfo:
    info = ValueInfo()
    for number, value in _fields(_message(data)):
        if number == 1:
            info.name = _text(value)
        elif number == 2:  # TypeProto.tensor_type (1) -> shape (2) -> dim (1)
            for type_number, tensor_type in _fields(_message(value)):
                if type_number != 1:
                    continue
                for tensor_number, shape in _fields(_message(tensor_type)):
                    if tensor_number != 2:
                        continue
                    for dim_number, dim in _fields(_message(shape)):
                        if dim_number == 1:
                            info.dims.append(_dim(dim))
    return info


def _dim(data) -> Dim:
    dim = Dim()
    for number, value in _fields(_message(data)):
        if number == 1:
            if not isinstance(value, int):
                raise ValueError("dim_value is not a number")
            dim.value, dim.param = value - (1 << 64) if value >= 1 << 63 else value, ""
        elif number == 2:
            dim.value, dim.param = None, _text(value)
    return dim
