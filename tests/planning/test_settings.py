"""The automatic settings of a device (batch size, compositing workers, x264 threads)."""

from lipsync_render.options import SessionOptions
from lipsync_render.planning.settings import automatic_settings, effective_threads


def test_automatic_batch_size_and_workers_by_device():
    cpu = automatic_settings(SessionOptions(), "cpu")
    gpu = automatic_settings(SessionOptions(), "cuda")
    assert (cpu.batch_size, cpu.workers, cpu.encoder_threads) == (1, 0, 1)
    assert gpu.batch_size == 25 and 1 <= gpu.workers <= 4 and gpu.encoder_threads == 0
    assert automatic_settings(SessionOptions(precision="int8"), "cpu").batch_size == 4
    explicit = automatic_settings(SessionOptions(batch_size=8, workers=2), "cpu")
    assert (explicit.batch_size, explicit.workers) == (8, 2)


def test_zero_threads_means_every_core_this_process_may_use():
    assert effective_threads(3) == 3
    assert effective_threads(0) >= 1
