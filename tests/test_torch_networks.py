"""The PyTorch networks module imports without torch; asking it for a network then explains the extra."""

import subprocess
import sys

CHECK = """
import sys
sys.modules["torch"] = None  # makes `import torch` raise ImportError
from lipsync_render import torch_networks
from lipsync_render.errors import LipsyncError
try:
    torch_networks.unet_model()
except LipsyncError as exc:
    print(exc)
"""


def test_imports_without_torch_and_names_the_extra():
    result = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "pip install 'lipsync-render[export]'" in result.stdout
