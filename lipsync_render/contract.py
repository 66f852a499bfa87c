"""The model contract: the shapes SyncTalk_2D's models and geometry agree on, and the checks of a package's parts.

Reference §3, §5 and §6: a 328x328 face crop whose central 320x320 region the UNet sees (6 channels: the region
and a masked copy) with a [32, 16, 16] block of audio features, and predicts (3 channels); the AVE audio encoder
turns one [1, 80, 16] mel window into 512 features, one window per 40 ms video frame. Package loading and package
building both check models, rectangles and features here, with the same sentences.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lipsync_render.errors import PackageError
from lipsync_render.onnx_graph import EXTERNAL, Graph, read_graph
from lipsync_render.onnx_ops import NEWEST_OPSET, STANDARD_OPS

VIDEO_FPS = 25  # one audio feature row per video frame: the models are trained at 25 fps
CROP_SIZE = 328  # the face crop every rectangle is resized to
ROI_OFFSET = 4  # the UNet's region starts this far inside the crop
ROI_SIZE = 320
ROI = slice(ROI_OFFSET, ROI_OFFSET + ROI_SIZE)
FEATURE_DIM = 512  # AVE features per encoder window
MEL_BINS = 80
MEL_WINDOW = 16  # mel frames per encoder window
AUDIO_BLOCK_SHAPE = (32, 16, 16)  # 16 feature rows of 512, as (2 x 16) channels of 16x16
VISUAL_INPUT_SHAPE = (6, ROI_SIZE, ROI_SIZE)
PREDICTION_SHAPE = (3, ROI_SIZE, ROI_SIZE)
ENCODER_INPUT_SHAPE = (1, MEL_BINS, MEL_WINDOW)
ENCODER_OUTPUT_SHAPE = (FEATURE_DIM,)


@dataclass(frozen=True)
class ModelContract:
    """The per-sample shapes of one model's inputs and first output (a batch axis comes first)."""

    key: str  # its entry in a package manifest's "files" and "models"
    label: str  # how sentences name it
    inputs: tuple[tuple[int, ...], ...]
    output: tuple[int, ...]
    input_dtypes: tuple[str, ...] = ()  # numpy dtype names, one per input; empty: all float32
    output_dtype: str = "float32"

    def input_dtype(self, index: int) -> np.dtype:
        return np.dtype(self.input_dtypes[index] if self.input_dtypes else "float32")

    def zeros(self, batch: int) -> list[np.ndarray]:
        """One batch of zero inputs: what warm-up runs."""
        return [np.zeros((batch, *shape), self.input_dtype(i)) for i, shape in enumerate(self.inputs)]


UNET = ModelContract("unet", "UNet", (VISUAL_INPUT_SHAPE, AUDIO_BLOCK_SHAPE), PREDICTION_SHAPE)
AUDIO_ENCODER = ModelContract("encoder", "audio encoder", (ENCODER_INPUT_SHAPE,), ENCODER_OUTPUT_SHAPE)
CROP_INPUT_SHAPE = (CROP_SIZE, CROP_SIZE, 3)  # the BGR uint8 328 crop, HWC
PREDICTION_UINT8_SHAPE = (ROI_SIZE, ROI_SIZE, 3)  # the BGR uint8 prediction, HWC, ready to paste
# The same UNet with its input and output work inside the model (on the device for a GPU): uint8 328 crops in, the
# ROI, / 255, the mask, x 255 and truncation inside, the uint8 prediction out. Bit-identical to UNET + model_input.py.
UNET_UINT8 = ModelContract(
    "unet",
    "UNet",
    (CROP_INPUT_SHAPE, AUDIO_BLOCK_SHAPE),
    PREDICTION_UINT8_SHAPE,
    input_dtypes=("uint8", "float32"),
    output_dtype="uint8",
)


@dataclass
class ModelIO:
    """Input and output tensor names of one ONNX model."""

    inputs: list[str]
    outputs: list[str]
    symbolic_output: bool = False  # the first output declares a non-numeric dim after the batch axis
    fixed_batch: int | None = None  # the batch the model takes when its inputs fix it (an export without dynamic axes)
    sample_bytes: int = 0  # memory one sample of a batch is planned to take (model_shapes.py; 0: unknown)


# Operator domains ONNX Runtime runs besides the standard one (its contrib ops, as in quantised models).
RUNTIME_DOMAINS = ("com.microsoft",)


def read_model_io(path: Path) -> tuple[list[tuple[str, list]], list[tuple[str, list]]]:
    """(name, dims) of a model's graph inputs and outputs, without loading its weights."""
    return _model_io(read_graph(path))


def _model_io(graph: Graph) -> tuple[list[tuple[str, list]], list[tuple[str, list]]]:
    initializers = {tensor.name for tensor in graph.initializers}

    def dims(info) -> list:
        return [d.value if d.value is not None else (d.param or "?") for d in info.dims]

    inputs = [(v.name, dims(v)) for v in graph.inputs if v.name not in initializers]
    outputs = [(v.name, dims(v)) for v in graph.outputs]
    return inputs, outputs


_PARAMETRIC_OPS = {"Conv", "ConvTranspose", "Gemm", "MatMul"}


def count_parameters(model) -> int:
    """Number of elements (floats) in an ``onnx.ModelProto``'s initializers used as weight or bias (inputs 1 and
    2) of Conv, ConvTranspose, Gemm or MatMul nodes, each initializer counted once.

    Other initializers (Resize scales, Reshape shapes, ...) are not counted. For the full models this equals
    the trainable parameter count after BatchNorm folding.
    """
    sizes = {t.name: int(np.prod(t.dims)) for t in model.graph.initializer}
    used = {
        name
        for node in model.graph.node
        if node.op_type in _PARAMETRIC_OPS
        for name in node.input[1:3]
        if name in sizes
    }
    return sum(sizes[name] for name in used)


def check_model(
    path: Path, contract: ModelContract, names: dict | None = None, root: Path | None = None
) -> tuple[list[str], ModelIO | None]:
    """(problems, names) of an ONNX model against the contract and, when given, a manifest's names.

    Every operator must be a standard one (or ONNX Runtime's own), and weights stored outside the file must lie
    inside ``root`` (the package directory; None: no external weights at all). The file is read by ``onnx_graph``,
    not ``onnx``, whose import alone cost a render half a second of CPU.
    """
    where = f"The {contract.label} model {path}"
    try:
        graph = read_graph(path)
        inputs, outputs = _model_io(graph)
    except (ValueError, OSError) as exc:
        return [f"{where} is not a readable ONNX model ({type(exc).__name__}: {str(exc)[:120]})."], None
    graph_problems = (
        _opset_problems(graph, where)
        or _operator_problems(graph, where)
        or _external_data_problems(graph, path, root, where)
    )
    if graph_problems:
        return graph_problems, None
    input_names, output_names = [n for n, _ in inputs], [n for n, _ in outputs]
    if names is not None and (
        input_names != names["inputs"] or output_names[: len(names["outputs"])] != names["outputs"]
    ):
        return [
            f"{where} has inputs {input_names} and outputs {output_names}, not the {names['inputs']} -> "
            f"{names['outputs']} the manifest names."
        ], None
    if len(inputs) != len(contract.inputs) or not outputs:
        return [
            f"{where} does not fit the contract: it takes {len(inputs)} inputs and gives {len(outputs)} outputs; "
            f"expected {len(contract.inputs)} inputs and an output."
        ], None
    problems = [
        f"{where} does not fit the contract: input '{name}' has shape {_dims(dims)}; expected "
        f"{_dims(['batch', *shape])}."
        for (name, dims), shape in zip(inputs, contract.inputs)
        if not _fits(dims, shape)
    ]
    name, dims = outputs[0]
    if not _fits(dims, contract.output):
        problems.append(
            f"{where} does not fit the contract: output '{name}' has shape {_dims(dims)}; expected "
            f"{_dims(['batch', *contract.output])}."
        )
    if problems:
        return problems, None
    from lipsync_render.model_shapes import cached_shape_facts

    facts = cached_shape_facts(path, contract, where)
    if facts.problems:
        return facts.problems, None
    symbolic = not all(isinstance(d, int) and d > 0 for d in outputs[0][1][1:]) and not facts.output_known
    output_names = names["outputs"] if names is not None else output_names
    return [], ModelIO(input_names, output_names, symbolic, facts.fixed_batch, facts.sample_bytes)


def require_finite(values: np.ndarray, contract: ModelContract, path: Path | None) -> np.ndarray:
    """``values`` when every one is finite; a model that gives NaN or infinity is a broken model (PackageError)."""
    if not np.isfinite(values).all():
        raise PackageError(
            f"The {contract.label} model {path or ''} produced NaN or infinite values; the model is "
            "broken (a bad export or corrupt weights)."
        )
    return values


def require_output_shape(output: np.ndarray, count: int, contract: ModelContract, path: Path | None) -> np.ndarray:
    """``output`` when it holds ``count`` samples of the contract's output shape; a model whose output is not what
    it declared is a broken package (PackageError), not a reshape error."""
    if tuple(np.shape(output)) != (count, *contract.output):
        raise PackageError(
            f"The {contract.label} model {path or ''} gave shape {list(np.shape(output))} for {count} sample(s); "
            f"the contract is [{count}, {', '.join(map(str, contract.output))}]."
        )
    return output


def _opset_problems(graph: Graph, where: str) -> list[str]:
    """An operator set newer than this tool knows is a package problem (exit 4), not a device one."""
    for domain, version in graph.opsets:
        if domain in ("", "ai.onnx") and not 1 <= version <= NEWEST_OPSET:
            return [f"{where} uses ONNX opset {version}; this tool runs opsets 1 to {NEWEST_OPSET}."]
    return []


def _operator_problems(graph: Graph, where: str) -> list[str]:
    for sub in graph.walk():
        for node in sub.nodes:
            domain = node.domain or ""
            if domain in RUNTIME_DOMAINS:
                continue
            if domain not in ("", "ai.onnx"):
                return [f"{where} uses the custom operator {domain}::{node.op_type}, which this tool cannot run."]
            if node.op_type not in STANDARD_OPS:
                return [f"{where} uses the unknown operator '{node.op_type}'."]
    return []


def _external_data_problems(graph: Graph, path: Path, root: Path | None, where: str) -> list[str]:
    """Weights stored in other files must be files inside ``root``."""
    from lipsync_render.paths import contained_path

    for sub in graph.walk():
        for tensor in sub.initializers:
            if tensor.data_location != EXTERNAL:
                continue
            for location in [value for key, value in tensor.external_data if key == "location"] or [""]:
                if root is None:
                    return [f"{where} keeps weights in another file ({location}); save the model as one file."]
                relative = (path.parent / location).relative_to(root) if not Path(location).is_absolute() else None
                inside = relative is not None and ".." not in Path(location).parts
                if not (inside and contained_path(root, str(relative))):
                    return [f"{where} reads weights from '{location}', which is outside the package directory {root}."]
    return []


def _fits(dims: list, expected: tuple) -> bool:
    """A batch axis (symbolic or fixed) followed by exactly the expected dims (symbolic dims accepted)."""
    return len(dims) == len(expected) + 1 and all(not isinstance(d, int) or d == e for d, e in zip(dims[1:], expected))


def _dims(dims: list) -> str:
    return "[" + ", ".join(map(str, dims)) + "]"


NO_FACE = (-1, -1, -1, -1)  # the row of a null rectangle (a frame without a face) in an (N, 4) array


def parse_rects(data: object, path: Path, allow_null: bool = False) -> np.ndarray:
    """Rectangles from JSON data: a non-empty list of [x1, y1, x2, y2] integers, as (N, 4) int64; else PackageError.
    With ``allow_null`` an entry may be null (the frame has no face): its row is :data:`NO_FACE`.

    Every value is checked as an integer before any cast, so no float or huge value can wrap into the frame.
    """
    rows = data if isinstance(data, list) else []
    if not rows or not all((allow_null and row is None) or _is_rect(row) for row in rows):
        what = "integer rectangle (or null: no face)" if allow_null else "integer rectangle"
        raise PackageError(f"{path} must hold one [x1, y1, x2, y2] {what} per frame.")
    return np.array([NO_FACE if row is None else row for row in rows], dtype=np.int64).reshape(-1, 4)


def _is_rect(row: object) -> bool:
    return (
        isinstance(row, list)
        and len(row) == 4
        and all(isinstance(v, int) and not isinstance(v, bool) and abs(v) < 2**31 for v in row)
    )


def face_rows(rects: np.ndarray) -> np.ndarray:
    """(N,) bool: True where a rectangle is a face's, False where it is null (:data:`NO_FACE`)."""
    return ~(np.asarray(rects).reshape(-1, 4) == NO_FACE).all(axis=1)


def check_rects(rects: np.ndarray, width: int, height: int, sources: Path | Sequence[Path]) -> list[str]:
    """One sentence per kind of bad rectangle (empty, not square, outside the frame), naming the first and where
    it came from (``sources``: one file for all rectangles, or one per rectangle); null rectangles are skipped."""
    faces = face_rows(rects)
    x1, y1, x2, y2 = np.asarray(rects, dtype=np.int64).reshape(-1, 4).T
    kinds = (
        ((x2 <= x1) | (y2 <= y1), "is empty"),
        ((x2 - x1) != (y2 - y1), "is not square"),
        ((x1 < 0) | (y1 < 0) | (x2 > width) | (y2 > height), f"lies outside the {width}x{height} frame"),
    )
    problems = []
    for bad, what in kinds:
        hits = np.flatnonzero(bad & faces)
        if hits.size:
            i = int(hits[0])
            source = sources if isinstance(sources, Path) else sources[i]
            more = f" ({hits.size} such rectangles)" if hits.size > 1 else ""
            problems.append(f"Crop rectangle {i} {np.asarray(rects)[i].tolist()} from {source} {what}{more}.")
    return problems


def check_features(features: np.ndarray, path: Path) -> list[str]:
    """Pre-extracted AVE features must be a float (K, 512) array."""
    if features.ndim != 2 or features.shape[1] != FEATURE_DIM or not np.issubdtype(features.dtype, np.floating):
        return [
            f"{path} holds {features.dtype} {features.shape}; audio features must be a float (K, {FEATURE_DIM}) array."
        ]
    if len(features) == 0:
        return [f"{path} holds no feature rows."]
    if not all(np.isfinite(features[i : i + 4096]).all() for i in range(0, len(features), 4096)):
        return [f"{path} holds NaN or infinite features."]
    return []
