"""Hostile models and packages for the hostile-input tests: small ONNX UNets that break one rule each, packages
with external weights, JPEG stores with a bad tile. Built with onnx.helper, each in milliseconds."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def edit_manifest(package: Path, change) -> None:
    data = json.loads((package / "package.json").read_text())
    change(data)
    (package / "package.json").write_text(json.dumps(data))


def drop_checksum(package: Path, rel: str) -> None:
    edit_manifest(package, lambda data: data.get("checksums", {}).pop(rel, None))


def small_unet(path: Path, output_dims, nodes, initializers=(), batch="batch", opset=17, domains=()) -> None:
    """A UNet-shaped model (true input names and shapes) whose output is computed by ``nodes`` from 'input'."""
    visual = helper.make_tensor_value_info("input", TensorProto.FLOAT, [batch, 6, 320, 320])
    audio = helper.make_tensor_value_info("audio", TensorProto.FLOAT, [batch, 32, 16, 16])
    output = helper.make_tensor_value_info("output", TensorProto.FLOAT, output_dims)
    graph = helper.make_graph(list(nodes), "hostile", [visual, audio], [output], list(initializers))
    opsets = [helper.make_opsetid("", opset), *(helper.make_opsetid(d, 1) for d in domains)]
    onnx.save(helper.make_model(graph, opset_imports=opsets, ir_version=8), path)


def _ints(name: str, values) -> onnx.TensorProto:
    return helper.make_tensor(name, TensorProto.INT64, [len(values)], list(values))


def rgb_slice(size: int = 320):
    """'input'[:, 0:3, :size, :size] -> 'output'."""
    inits = [_ints("s", [0, 0, 0]), _ints("e", [3, size, size]), _ints("a", [1, 2, 3])]
    return [helper.make_node("Slice", ["input", "s", "e", "a"], ["output"])], inits


def replace_unet(package: Path, dims, nodes_and_inits=None, **kwargs) -> None:
    nodes, inits = nodes_and_inits or rgb_slice()
    small_unet(package / "unet.onnx", dims, nodes, inits, **kwargs)
    drop_checksum(package, "unet.onnx")


def lying_unet(package: Path) -> None:
    """Declares [batch, 3, 320, 320] and returns [batch, 3, 160, 160]."""
    replace_unet(package, ["batch", 3, 320, 320], rgb_slice(160))


def fixed_batch_unet(package: Path) -> None:
    """Every axis fixed, batch 1 included (a model exported without dynamic axes)."""
    replace_unet(package, [1, 3, 320, 320], batch=1)


def opset_99_unet(package: Path) -> None:
    replace_unet(package, ["batch", 3, 320, 320], opset=99)


def bomb_unet(package: Path, gigabytes: float = 10.8) -> None:
    """A 2 KB UNet whose symbolic output asks for ``gigabytes`` per sample: the region tiled along the width."""
    repeats = max(1, round(gigabytes * 1e9 / (3 * 320 * 320 * 4)))
    nodes, inits = rgb_slice()
    nodes[0].output[0] = "rgb"
    nodes.append(helper.make_node("Tile", ["rgb", "reps"], ["output"]))
    inits.append(_ints("reps", [1, 1, 1, repeats]))
    replace_unet(package, ["batch", "c", "h", "w"], (nodes, inits))


def infinite_unet(package: Path) -> None:
    """Output = input / 0: infinite (or NaN) everywhere."""
    nodes, inits = rgb_slice()
    nodes[0].output[0] = "rgb"
    nodes.append(helper.make_node("Div", ["rgb", "zero"], ["output"]))
    inits.append(numpy_helper.from_array(np.zeros(1, np.float32), "zero"))
    replace_unet(package, ["batch", 3, 320, 320], (nodes, inits))


def external_weights(package: Path, model: str = "unet.onnx") -> None:
    """The model's weights moved into a file of their own inside the package (as large exports are saved)."""
    loaded = onnx.load(str(package / model))
    onnx.save(loaded, str(package / model), save_as_external_data=True, location=f"{model}.data", size_threshold=0)
    drop_checksum(package, model)


def jpeg_package(tiny_jpeg: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(tiny_jpeg, tmp_path / "pkg_jpeg"))


def tile_span(package: Path, frame: int, tile: int) -> tuple[int, int]:
    offsets = np.load(package / "frames.index.npy")
    columns = len(offsets) - 1
    frames = json.loads((package / "package.json").read_text())["frame_count"]
    per_frame = columns // frames
    k = frame * per_frame + tile
    return int(offsets[k]), int(offsets[k + 1])


def corrupt_tile_scan(package: Path, frame: int = 3, tile: int = 5) -> None:
    """Zero bytes in the middle of a tile's entropy-coded scan: the headers stay intact, libjpeg only warns."""
    start, stop = tile_span(package, frame, tile)
    data = bytearray((package / "frames.jpg.bin").read_bytes())
    code = data[start:stop]
    scan = code.find(b"\xff\xda")
    middle = (scan + len(code)) // 2
    for i in range(middle, min(middle + 64, len(code) - 2)):
        code[i] = 0
    data[start:stop] = code
    (package / "frames.jpg.bin").write_bytes(bytes(data))
    drop_checksum(package, "frames.jpg.bin")


def png_tile(package: Path, frame: int = 2, tile: int = 0) -> None:
    """One tile replaced by a PNG of the right size (the index shifted to fit)."""
    start, stop = tile_span(package, frame, tile)
    data = (package / "frames.jpg.bin").read_bytes()
    image = cv2.imdecode(np.frombuffer(data[start:stop], np.uint8), cv2.IMREAD_COLOR)
    png = cv2.imencode(".png", image)[1].tobytes()
    (package / "frames.jpg.bin").write_bytes(data[:start] + png + data[stop:])
    offsets = np.load(package / "frames.index.npy")
    k = int(np.searchsorted(offsets, stop))
    offsets[k:] += len(png) - (stop - start)
    np.save(package / "frames.index.npy", offsets)
    drop_checksum(package, "frames.jpg.bin")
    drop_checksum(package, "frames.index.npy")
