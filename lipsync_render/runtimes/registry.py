"""The inference runtimes this tool can use, by name, most preferred first; each is one module, imported lazily."""

BACKENDS = {
    "onnxruntime": "lipsync_render.runtimes.ort",
    "openvino": "lipsync_render.runtimes.openvino",
}
BACKEND_CHOICES = ("auto", *BACKENDS)
