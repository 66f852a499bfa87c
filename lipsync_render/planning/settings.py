"""The automatic settings of a device: batch size, compositing workers, x264 threads and inference threads.

The session plan's rules for sizes; kept apart so the precision measurement times each candidate at the batch it
would really render with.
"""

from __future__ import annotations

import os
from dataclasses import replace

from lipsync_render.options import SessionOptions


def automatic_settings(requested: SessionOptions, device_kind: str) -> SessionOptions:
    """A copy with the automatic settings filled in for a device kind ('cpu', 'cuda', 'tensorrt').

    On the CPU the UNet's cost per frame is flat from batch 1 to 25 while its activations grow with the
    batch (7 GB peak at 25), and the other stages are light: one-frame batches and in-process compositing
    measured fastest there (benchmarks/RESULTS.md), and one x264 thread encodes 720p with about 30% less CPU
    time per frame than x264's own threading, leaving the cores to the UNet. A GPU wants large constant
    batches; the CPU stages then set the pace, so they get processes and x264 its threads.
    """
    on_cpu = device_kind == "cpu"
    cpu_batch = 4 if requested.precision == "int8" else 1  # int8 kernels gain from batching (measured +20%)
    gpu_workers = min(4, max(1, (os.cpu_count() or 2) // 2))
    return replace(
        requested,
        batch_size=requested.batch_size or (cpu_batch if on_cpu else 25),
        workers=requested.workers if requested.workers is not None else (0 if on_cpu else gpu_workers),
        encoder_threads=requested.encoder_threads if requested.encoder_threads is not None else (1 if on_cpu else 0),
    )


def effective_threads(threads: int) -> int:
    """Inference threads a request really gets: 0 means every core this process may use."""
    if threads:
        return threads
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        return os.cpu_count() or 1
