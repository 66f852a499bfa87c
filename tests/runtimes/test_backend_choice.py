"""--backend auto with a device request: never a GPU request on the CPU, a GPU backend preferred under auto."""

import subprocess
import sys

import pytest

import lipsync_render.runtimes as runtimes
from lipsync_render.errors import DeviceError


class FakeBackend:
    def __init__(self, name, plans, reason=None):
        self.name, self.plans, self.reason = name, plans, reason

    def unavailable_reason(self):
        return self.reason

    def planned_device(self, device):
        kind = device.split(":")[0]
        if kind not in self.plans:
            raise DeviceError(f"{self.name} cannot run {kind}.")
        return self.plans[kind]


def machine(monkeypatch, backends, driver):
    """A machine with these backends (in preference order) and an NVIDIA driver or not."""
    by_name = {backend.name: backend for backend in backends}
    monkeypatch.setattr(runtimes, "BACKENDS", {name: name for name in by_name})
    monkeypatch.setattr(runtimes, "BACKEND_CHOICES", ("auto", *by_name))
    monkeypatch.setattr(runtimes, "_import", lambda name: by_name[name])
    monkeypatch.setattr(runtimes, "cuda_driver_present", lambda: driver)


# The lent GPU hosts: ONNX Runtime's CPU build, OpenVINO, and a CUDA PyTorch.
CPU_ORT = FakeBackend("onnxruntime", {"auto": "cpu", "cpu": "cpu"})
OPENVINO = FakeBackend("openvino", {"auto": "cpu", "cpu": "cpu", "cuda": "cpu", "tensorrt": "cpu"})
CUDA_TORCH = FakeBackend("torch", {"auto": "cuda", "cpu": "cpu", "cuda": "cuda"})


def test_cuda_with_auto_takes_the_backend_that_runs_cuda(monkeypatch):
    machine(monkeypatch, [CPU_ORT, OPENVINO, CUDA_TORCH], driver=True)
    assert runtimes.get_backend("auto", "cuda").name == "torch"
    assert runtimes.get_backend("auto", "auto").name == "torch"  # a GPU is there and torch can use it
    assert runtimes.get_backend("auto", "cpu").name == "onnxruntime"


def test_cuda_that_no_backend_runs_is_an_error_not_the_cpu(monkeypatch):
    machine(monkeypatch, [CPU_ORT, OPENVINO, FakeBackend("torch", {}, reason="PyTorch is not installed")], True)
    with pytest.raises(
        DeviceError, match=r"No inference backend can run on --device cuda.*openvino: it runs on the CPU"
    ):
        runtimes.get_backend("auto", "cuda")
    assert runtimes.get_backend("auto", "auto").name == "onnxruntime"  # no GPU backend: the CPU, said in the log


def test_without_a_driver_auto_never_looks_past_the_first_cpu_backend(monkeypatch):
    machine(monkeypatch, [CPU_ORT, OPENVINO, FakeBackend("torch", {}, reason="must not be asked")], driver=False)
    assert runtimes.get_backend("auto", "auto").name == "onnxruntime"


def test_torch_asked_for_without_torch_is_one_sentence_and_exit_5(tiny_package, short_wav, tmp_path):
    """PyTorch made unimportable in a child process: the CLI says so in one sentence."""
    script = (
        "import sys; sys.modules['torch'] = None\n"
        "from lipsync_render.cli import main\n"
        f"sys.argv = ['lipsync', 'render', {str(short_wav)!r}, '--model', {str(tiny_package)!r}, "
        f"'-o', {str(tmp_path / 'out.mp4')!r}, '--backend', 'torch']\n"
        "main()\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 5
    assert "torch backend cannot run here" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "out.mp4").exists()
