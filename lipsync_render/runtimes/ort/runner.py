"""Batched runs of one ONNX Runtime session, as a :class:`~lipsync_render.runtimes.base.LoadedModel`."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lipsync_render.contract import ModelContract, require_finite, require_output_shape
from lipsync_render.errors import DeviceError
from lipsync_render.runtimes.ort.sessions import CUDA, TENSORRT, execution_device
from lipsync_render.runtimes.ort.uint8_io import CHECKSUM


class OrtModel:
    """Runs a session in batches of ``batch_size``.

    With ``bind_buffers`` (the default on a GPU) every run has one constant shape, through IOBinding into
    preallocated device buffers (the same shapes and addresses every time: what CUDA graphs and TensorRT need); a
    short batch is padded and the padding dropped. Otherwise a short batch runs at its own size, since padding
    would only burn CPU cores. A model exported with a fixed batch axis (e.g. batch 1) runs at exactly that size.
    """

    def __init__(
        self,
        session,
        contract: ModelContract,
        batch_size: int,
        bind_buffers: bool | None = None,
        path: Path | None = None,
    ):
        self.session = session
        self.contract = contract
        self.path = path
        self.input_names = [i.name for i in session.get_inputs()]
        outputs = [o.name for o in session.get_outputs()]
        self.output_name = outputs[0]
        # the uint8 wrapper's second output: the float output's sum, NaN when the model is broken
        self.checksum_name = CHECKSUM if CHECKSUM in outputs else None
        fixed = session.get_inputs()[0].shape[0]
        self.model_batch = fixed if isinstance(fixed, int) and fixed > 0 else None
        self.batch_size = self.model_batch or batch_size
        self.device = execution_device(session)
        self.io_on_device = self.device != "cpu" if bind_buffers is None else bind_buffers
        self.constant_shape = self.io_on_device or self.model_batch is not None
        self.binding, self.buffers = self._bind_buffers() if self.io_on_device else (None, None)

    @property
    def providers(self) -> list[str]:
        return self.session.get_providers()

    def _bind_buffers(self):
        """Preallocated input and output OrtValues on the session's device, bound once."""
        import onnxruntime as ort

        device, index = device_of(self.session)
        contract = self.contract
        specs = [((self.batch_size, *shape), contract.input_dtype(i)) for i, shape in enumerate(contract.inputs)]
        specs.append(((self.batch_size, *contract.output), np.dtype(contract.output_dtype)))
        values = [ort.OrtValue.ortvalue_from_shape_and_type(shape, dtype, device, index) for shape, dtype in specs]
        binding = self.session.io_binding()
        for name, value in zip(self.input_names, values):
            binding.bind_ortvalue_input(name, value)
        binding.bind_ortvalue_output(self.output_name, values[-1])
        if self.checksum_name is not None:
            values.append(ort.OrtValue.ortvalue_from_shape_and_type((), np.float32, device, index))
            binding.bind_ortvalue_output(self.checksum_name, values[-1])
        return binding, values

    def run(self, *inputs: np.ndarray) -> np.ndarray:
        """The first output (n, *contract.output), in the contract's dtype, for n samples of each input."""
        n = len(inputs[0])
        inputs = [np.ascontiguousarray(x, self.contract.input_dtype(i)) for i, x in enumerate(inputs)]
        if not self.constant_shape and n <= self.batch_size:
            return self._run_once(inputs, n)
        result = np.empty((n, *self.contract.output), self.contract.output_dtype)
        for first in range(0, n, self.batch_size):
            chunk = [x[first : first + self.batch_size] for x in inputs]
            count = len(chunk[0])
            if self.constant_shape:
                chunk = [_padded(x, self.batch_size) for x in chunk]
            result[first : first + count] = self._run_once(chunk, len(chunk[0]))[:count]
        return result

    def _run_once(self, inputs, n: int) -> np.ndarray:
        if self.binding is None:
            names = [self.output_name] if self.checksum_name is None else [self.output_name, self.checksum_name]
            outputs = self.session.run(names, dict(zip(self.input_names, inputs)))
            output = outputs[0]
            checksum = outputs[1] if self.checksum_name else None
        else:
            for buffer, x in zip(self.buffers, inputs):
                buffer.update_inplace(x)
            self.session.run_with_iobinding(self.binding)
            output = self.buffers[len(self.contract.inputs)].numpy()
            checksum = self.buffers[-1].numpy() if self.checksum_name else None
        if checksum is not None:
            require_finite(np.asarray(checksum, np.float32).reshape(1), self.contract, self.path)
        output = require_output_shape(output, n, self.contract, self.path)
        return np.asarray(output, self.contract.output_dtype)

    def warm_up(self) -> None:
        """One full-size run on zeros: allocation, kernel choice, TensorRT engine builds and graph capture happen
        now; what fails here (a missing cuDNN, too little GPU memory, a capture error) is one DeviceError sentence."""
        try:
            self.run(*self.contract.zeros(self.batch_size))
        except Exception as exc:  # ONNX Runtime raises its own Fail/RuntimeException types
            raise DeviceError(warm_up_failure(exc, self.contract.label, self.device, self.batch_size)) from None


def warm_up_failure(exc: Exception, label: str, device: str, batch_size: int) -> str:
    """One sentence for a failure of the first GPU run, with the likely fix."""
    text = " ".join(str(exc).split())
    lowered = text.lower()
    if "out of memory" in lowered or "cudaerrormemoryallocation" in lowered or "failed to allocate" in lowered:
        hint = f"the GPU ran out of memory at batch {batch_size}; try a smaller --batch-size"
    elif "cudnn" in lowered:
        hint = "cuDNN is missing or does not match this ONNX Runtime build; run 'lipsync doctor'"
    elif "graph" in lowered and "captur" in lowered:
        hint = "CUDA graph capture failed; render without --cuda-graph"
    else:
        hint = "run 'lipsync doctor' to check the CUDA libraries"
    return f"The {label} could not run on {device} ({hint}): {text[:200]}."


def _padded(batch: np.ndarray, size: int) -> np.ndarray:
    """A C-contiguous batch of exactly ``size`` rows (zeros appended)."""
    batch = np.ascontiguousarray(batch)
    if len(batch) == size:
        return batch
    return np.concatenate([batch, np.zeros((size - len(batch), *batch.shape[1:]), batch.dtype)])


def device_of(session) -> tuple[str, int]:
    """The OrtValue device ('cuda' or 'cpu') and index a session runs on."""
    if execution_device(session) == "cpu":
        return "cpu", 0
    options = session.get_provider_options().get(CUDA) or session.get_provider_options().get(TENSORRT) or {}
    return "cuda", int(options.get("device_id", 0))
