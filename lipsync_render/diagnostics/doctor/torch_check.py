"""The doctor's PyTorch line: is the optional torch backend there, and can it use the GPU.

torch is probed in a child process: importing it loads its own CUDA libraries into the process, which would
change what the doctor's other checks (and anything after them in the same process) find.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

from lipsync_render.diagnostics.doctor.check import Check

EXTRA = "pip install 'lipsync-render[torch]'"
NAME = "torch (optional)"
PROBE = (
    "import json, torch\n"
    "gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] "
    "if torch.cuda.is_available() else []\n"
    "print(json.dumps({'version': torch.__version__, 'cuda': torch.version.cuda, 'gpus': gpus}))\n"
)


def probe_torch() -> dict | str:
    """torch's version, CUDA build and GPUs as a child process sees them, or why the probe failed."""
    try:
        result = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=120)
        return json.loads(result.stdout.strip().splitlines()[-1])
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return "import torch failed in a child process"


def check_torch(driver: bool) -> Check:
    """What ``--backend torch`` can use here."""
    if importlib.util.find_spec("torch") is None:
        return Check(NAME, "ok", f"not installed; {EXTRA} for --backend torch")
    found = probe_torch()
    if isinstance(found, str):
        return Check(NAME, "warn", found, f"reinstall torch ({EXTRA})")
    build = f"CUDA {found['cuda']} build" if found["cuda"] else "CPU-only build"
    detail = f"{found['version']}, {build}"
    if found["gpus"]:
        return Check(NAME, "ok", f"{detail}, --backend torch runs on CUDA: {', '.join(found['gpus'])}")
    if driver:
        fix = "install a torch build for this driver's CUDA version" if found["cuda"] else "a CUDA build of torch"
        return Check(NAME, "warn", f"{detail}: torch cannot use this machine's NVIDIA GPU", fix)
    return Check(NAME, "ok", f"{detail}, no GPU here: --backend torch runs on the CPU (fp32)")
