"""The inference runtimes this tool can use, by name, most preferred first; each is one module, imported lazily.

PyTorch comes last: ``auto`` takes it only where no runtime before it can run the requested device (a GPU host
whose ONNX Runtime is the CPU build; see ``runtimes.get_backend``).
"""

BACKENDS = {
    "onnxruntime": "lipsync_render.runtimes.ort",
    "openvino": "lipsync_render.runtimes.openvino",
    "torch": "lipsync_render.runtimes.pytorch",
}
BACKEND_CHOICES = ("auto", *BACKENDS)
