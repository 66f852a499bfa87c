"""Batched runs of a torch network as a :class:`~lipsync_render.runtimes.base.LoadedModel`.

On CUDA every run has one constant shape (a short batch padded, the padding dropped): inputs are copied from
pinned host buffers into static device buffers, the network runs (replaying one captured CUDA graph with
``cuda_graph``) and the output comes back through a pinned buffer. On the CPU a short batch runs at its own size.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from lipsync_render.contract import ModelContract, require_finite
from lipsync_render.errors import DeviceError
from lipsync_render.runtimes.ort.runner import warm_up_failure

GRAPH_WARM_UP_RUNS = 3  # eager runs on a side stream before capture (cuDNN autotuning, lazy allocations)


class TorchModel:
    """A network wrapped so that it returns (output, output sum); see :mod:`networks` for the wrappers."""

    def __init__(
        self,
        module: torch.nn.Module,
        contract: ModelContract,
        batch_size: int,
        device: torch.device,
        precision: str,
        cuda_graph: bool = False,
        path: Path | None = None,
        static_buffers: bool | None = None,
    ):
        self.module = module
        self.contract = contract
        self.batch_size = batch_size
        self.torch_device = device
        self.device = device.type
        self.path = path
        # static buffers, one constant shape: the default on CUDA (graph capture needs it); tests use them on the CPU
        self.constant_shape = self.io_on_device = device.type == "cuda" if static_buffers is None else static_buffers
        self.cuda_graph = cuda_graph and self.device == "cuda"
        graph = " CUDA graph" if self.cuda_graph else ""
        self.providers = [f"PyTorch {torch.__version__} {device}{graph}"]
        self.graph = None
        self.buffers = self._buffers() if self.constant_shape else None

    def _buffers(self) -> dict:
        """Pinned host staging and static device buffers for one constant-shape batch."""
        pinned = self.device == "cuda"

        def pair(shape, dtype):
            host = torch.empty((self.batch_size, *shape), dtype=dtype, pin_memory=pinned)
            return host, torch.empty_like(host, device=self.torch_device)

        dtypes = [_torch_dtype(self.contract.input_dtype(i)) for i in range(len(self.contract.inputs))]
        return {
            "inputs": [pair(shape, dtype) for shape, dtype in zip(self.contract.inputs, dtypes)],
            "output": torch.empty(
                (self.batch_size, *self.contract.output),
                dtype=_torch_dtype(self.contract.output_dtype),
                pin_memory=pinned,
            ),
            "result": None,  # the device output and its sum, set by the first run (or the graph capture)
        }

    def run(self, *inputs: np.ndarray) -> np.ndarray:
        """The output (n, *contract.output) in the contract's dtype for n samples of each input."""
        n = len(inputs[0])
        result = np.empty((n, *self.contract.output), self.contract.output_dtype)
        for first in range(0, n, self.batch_size):
            chunk = [x[first : first + self.batch_size] for x in inputs]
            count = len(chunk[0])
            result[first : first + count] = self._run_once(chunk)[:count]
        return result

    def _run_once(self, inputs: list[np.ndarray]) -> np.ndarray:
        if self.buffers is None:
            with torch.inference_mode():
                tensors = [
                    torch.from_numpy(np.ascontiguousarray(x, self.contract.input_dtype(i)))
                    for i, x in enumerate(inputs)
                ]
                output, total = self.module(*tensors)
            self._check(total)
            return output.numpy()
        count = len(inputs[0])
        for (host, device), x in zip(self.buffers["inputs"], inputs):
            host[:count].numpy()[...] = x
            if count < self.batch_size:
                host[count:].zero_()
            device.copy_(host, non_blocking=True)
        with torch.no_grad():  # not inference_mode: its tensors and CUDA graph capture do not mix in every release
            self._forward()
        output, total = self.buffers["result"]
        self.buffers["output"].copy_(output, non_blocking=True)
        if self.device == "cuda":
            torch.cuda.current_stream(self.torch_device).synchronize()
        self._check(total)
        return self.buffers["output"].numpy()

    def _forward(self) -> None:
        """The network on the static device buffers: eagerly, or by replaying the captured graph."""
        devices = [device for _, device in self.buffers["inputs"]]
        if not self.cuda_graph:
            self.buffers["result"] = self.module(*devices)
            return
        if self.graph is None:
            side = torch.cuda.Stream(self.torch_device)
            side.wait_stream(torch.cuda.current_stream(self.torch_device))
            with torch.cuda.stream(side):
                for _ in range(GRAPH_WARM_UP_RUNS):
                    self.module(*devices)
            torch.cuda.current_stream(self.torch_device).wait_stream(side)
            self.graph = torch.cuda.CUDAGraph()
            # thread_local: the features thread may use CUDA (the audio encoder) while this thread captures
            with torch.cuda.graph(self.graph, capture_error_mode="thread_local"):
                self.buffers["result"] = self.module(*devices)
        self.graph.replay()

    def _check(self, total: torch.Tensor) -> None:
        require_finite(np.array([float(total)]), self.contract, self.path)

    def warm_up(self) -> None:
        """One full-size run on zeros: cuDNN's kernel choice, allocations and the graph capture happen now."""
        try:
            self.run(*self.contract.zeros(self.batch_size))
        except (RuntimeError, torch.cuda.OutOfMemoryError) as exc:
            raise DeviceError(warm_up_failure(exc, self.contract.label, self.device, self.batch_size)) from None


def _torch_dtype(name: str) -> torch.dtype:
    return {"uint8": torch.uint8, "float32": torch.float32}[str(name)]
