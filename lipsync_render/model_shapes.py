"""What a model's shapes say before it runs: the shapes its operators compute for one sample, whether they agree
with what it declares, its fixed batch, and the memory one sample needs, so a model run is bounded before it starts.

ONNX shape inference (with constant propagation) on the graph with the batch axis set to 1 gives every tensor's
shape for one sample without running anything (0.2 s for the full UNet). From those:

- a declared output shape the operators contradict (a model that says 320 and returns 160) is a package problem,
  found here rather than as a reshape error mid-render;
- a symbolic output the operators resolve is checked without running a sample (the probe only runs when they do
  not), and a tensor of many gigabytes (a 2 KB model that tiles its input 8,789 times) is refused unrun;
- the bytes one sample holds at once: tensors are walked in graph order, each live from the node that makes it to
  the last node that reads it. For the full UNet that peak is 105 MB per sample, while ONNX Runtime's CPU kernels
  measured 7 GB at batch 25 (280 MB per sample: im2col buffers and arena slack), so a run is planned at
  ``RUNTIME_FACTOR`` times the peak, per sample of the batch.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from lipsync_render.errors import LipsyncError

RUNTIME_FACTOR = 3  # measured kernel workspace over the live-tensor peak (see above)
MAX_SAMPLE_BYTES = 8 << 30  # one sample of a model in the contract's shapes needs far less (UNet: 0.3 GB)
HEADROOM = 0.8  # the share of available memory a batch may plan to take


@dataclass
class ShapeFacts:
    problems: list[str] = field(default_factory=list)
    fixed_batch: int | None = None  # the batch axis the model's inputs declare, when it is a number
    sample_bytes: int = 0  # planned bytes per sample of a batch (0: unknown)
    output_known: bool = False  # the first output's shape for one sample is known from its operators


def _dims(value_info) -> list:
    shape = value_info.type.tensor_type.shape
    return [d.dim_value if d.HasField("dim_value") else None for d in shape.dim]


def _itemsize(value_info) -> int:
    try:
        import onnx

        return np.dtype(onnx.helper.tensor_dtype_to_np_dtype(value_info.type.tensor_type.elem_type)).itemsize
    except (KeyError, TypeError, ValueError):
        return 4


def shape_facts(model, contract, where: str) -> ShapeFacts:
    """The facts above for an ``onnx.ModelProto`` (weights need not be loaded) checked against ``contract``."""
    import onnx
    from onnx import shape_inference

    facts = ShapeFacts()
    inputs = [v for v in model.graph.input if v.name not in {i.name for i in model.graph.initializer}]
    first = _dims(inputs[0]) if inputs else []
    facts.fixed_batch = first[0] if first and first[0] else None
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    for value in probe.graph.input:
        dims = value.type.tensor_type.shape.dim
        if dims and not dims[0].HasField("dim_value"):
            dims[0].ClearField("dim_param")
            dims[0].dim_value = 1
    _weights_as_inputs(probe.graph)
    try:
        standard = all(node.domain in ("", "ai.onnx") for node in probe.graph.node)  # contrib ops: not strict
        inferred = shape_inference.infer_shapes(probe, strict_mode=standard, data_prop=True)
    except Exception as exc:  # onnx raises InferenceError, ValidationError and others for a contradiction
        text = " ".join(str(exc).split())[:200]
        facts.problems.append(f"{where} has shapes its own operators contradict ({text}).")
        return facts
    graph = inferred.graph
    sizes = {}
    for value in [*graph.input, *graph.value_info, *graph.output]:
        dims = _dims(value)
        if dims and None not in dims:
            sizes[value.name] = int(np.prod(dims, dtype=np.float64)) * _itemsize(value)
    batch = facts.fixed_batch or 1
    output = _dims(graph.output[0]) if graph.output else []
    facts.output_known = bool(output) and None not in output
    if facts.output_known and output != [batch, *contract.output]:
        facts.problems.append(
            f"{where} gives shape {output} for {'one sample' if batch == 1 else f'a batch of {batch}'} (from its "
            f"operators, unrun); the contract is [{batch}, {', '.join(map(str, contract.output))}]."
        )
    peak = _live_peak(graph, sizes) // batch
    largest = max(sizes.values(), default=0) // batch
    if max(peak, largest) > MAX_SAMPLE_BYTES:
        name = max(sizes, key=sizes.get)
        facts.problems.append(
            f"{where} needs {max(peak, largest) / 1e9:.1f} GB for one sample (its tensor '{name}' alone is "
            f"{sizes[name] / 1e9:.1f} GB); a model of this contract needs well under {MAX_SAMPLE_BYTES >> 30} GB."
        )
    facts.sample_bytes = RUNTIME_FACTOR * peak
    return facts


def _weights_as_inputs(graph) -> None:
    """Weights kept in other files (not loaded here) become inputs of their declared shape: inference then knows
    their shapes, not their values, instead of failing on data it cannot read."""
    import onnx

    external = [t for t in graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL]
    for tensor in external:
        graph.input.append(onnx.helper.make_tensor_value_info(tensor.name, tensor.data_type, list(tensor.dims)))
    kept = [t for t in graph.initializer if t.data_location != onnx.TensorProto.EXTERNAL]
    del graph.initializer[:]
    graph.initializer.extend(kept)


def _live_peak(graph, sizes: dict[str, int]) -> int:
    """The most bytes alive at once, walking the nodes in order (an ONNX graph is stored topologically sorted)."""
    last_use = {}
    for index, node in enumerate(graph.node):
        for name in node.input:
            last_use[name] = index
    kept = {v.name for v in graph.output}
    live = sum(sizes.get(v.name, 0) for v in graph.input)  # the samples (and any weights read from files)
    peak = live
    for index, node in enumerate(graph.node):
        live += sum(sizes.get(name, 0) for name in node.output)
        peak = max(peak, live)
        live -= sum(sizes.get(name, 0) for name in set(node.input) if last_use.get(name) == index and name not in kept)
    return peak


def max_batch(sample_bytes: int, available_bytes: int) -> int | None:
    """The largest batch whose planned memory fits in ``HEADROOM`` of what is available (None: unknown)."""
    if not sample_bytes or not available_bytes:
        return None
    return int(HEADROOM * available_bytes // sample_bytes)


def batch_memory_problem(label: str, sample_bytes: int, batch: int, available_bytes: int, where: str) -> str | None:
    """One sentence when a batch of this model cannot fit in the memory available on the device, else None."""
    limit = max_batch(sample_bytes, available_bytes)
    if limit is None or batch <= limit:
        return None
    need, have = batch * sample_bytes / 1e9, available_bytes / 1e9
    if limit < 1:
        return f"The {label} needs about {sample_bytes / 1e9:.1f} GB per sample; {where} has {have:.1f} GB available."
    return (
        f"Batch size {batch} needs about {need:.1f} GB for the {label}; {where} has {have:.1f} GB available, "
        f"enough for a batch of at most {limit}."
    )


FACTS_VERSION = 1


def cached_shape_facts(path: Path, contract, where: str) -> ShapeFacts:
    """:func:`shape_facts` of the model file at ``path``, remembered per file: shape inference needs ``onnx``, whose
    import alone costs a render half a second of CPU, so the facts are kept in this user's cache
    (``$LIPSYNC_CACHE/model-facts``) under the file's identity on disk (size, mtime and ctime in ns, inode,
    device: a rewrite in place moves the ctime). A missing, unreadable or malformed entry means inferring again;
    an entry that cannot be written is skipped."""
    import hashlib

    from lipsync_render import json_bounded
    from lipsync_render.paths import file_identity, user_cache_dir, write_file_atomically

    identity = file_identity(path)
    key = hashlib.sha256(repr((FACTS_VERSION, os.path.realpath(path), identity, contract.name)).encode()).hexdigest()
    entry = user_cache_dir("model-facts") / f"{key}.json"
    if identity is not None:
        try:
            data = json_bounded.loads(entry.read_bytes()[: 1 << 16], entry)
            return ShapeFacts(
                [str(p) for p in data["problems"]],
                data["fixed_batch"] if isinstance(data["fixed_batch"], int) else None,
                int(data["sample_bytes"]),
                bool(data["output_known"]),
            )
        except (OSError, LipsyncError, KeyError, TypeError, ValueError):
            pass
    import onnx

    facts = shape_facts(onnx.load(str(path), load_external_data=False), contract, where)
    if identity is not None and file_identity(path) == identity:
        try:
            entry.parent.mkdir(parents=True, exist_ok=True)
            text = json.dumps(asdict(facts))
            write_file_atomically(entry, lambda temporary: Path(temporary).write_text(text))
        except (OSError, LipsyncError):
            pass
    return facts
