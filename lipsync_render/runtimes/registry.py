"""The inference runtimes this tool can use, by name, most preferred first; each is one module, imported lazily.

The names and their order are the option catalogue's (``options.BACKEND_NAMES``: what ``--backend`` accepts);
this maps each to the module that implements it. PyTorch comes last: ``auto`` takes it only where no runtime before
it can run the requested device (a GPU host whose ONNX Runtime is the CPU build; see ``runtimes.get_backend``).
"""

from lipsync_render.options import BACKEND_CHOICES, BACKEND_NAMES

BACKENDS = {
    "onnxruntime": "lipsync_render.runtimes.ort",
    "openvino": "lipsync_render.runtimes.openvino",
    "torch": "lipsync_render.runtimes.pytorch",
}
assert tuple(BACKENDS) == BACKEND_NAMES, "every backend the options offer has one module, in the same order"
__all__ = ["BACKENDS", "BACKEND_CHOICES"]
