"""The doctor's PyTorch line: is the optional torch backend there, and can it use the GPU."""

from __future__ import annotations

import importlib.util

from lipsync_render.diagnostics.doctor import Check

EXTRA = "pip install 'lipsync-render[torch]'"


def check_torch(driver: bool) -> Check:
    """torch's version and CUDA build, and whether it sees a GPU; imported only when it is installed."""
    if importlib.util.find_spec("torch") is None:
        return Check("torch (optional)", "ok", f"not installed; {EXTRA} for --backend torch")
    import torch

    build = f"CUDA {torch.version.cuda} build" if torch.version.cuda else "CPU-only build"
    detail = f"{torch.__version__}, {build}"
    if torch.cuda.is_available():
        names = ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
        return Check("torch (optional)", "ok", f"{detail}, --backend torch runs on CUDA: {names}")
    if driver:
        fix = (
            "install a torch build for this driver's CUDA version"
            if torch.version.cuda
            else "install a CUDA build of torch"
        )
        return Check(
            "torch (optional)", "warn", f"{detail}: an NVIDIA driver is here but torch cannot use the GPU", fix
        )
    return Check("torch (optional)", "ok", f"{detail}, no GPU here: --backend torch runs on the CPU (fp32)")
