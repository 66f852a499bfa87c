"""The `lipsync` command."""

import os

# Set before numpy loads, for this process and the helpers it spawns: numpy's OpenBLAS serves only the mel
# projection here (a product one thread does in well under a millisecond), and its idle threads spin beside the UNet
# on every core (perf, 8 s of speech on 2 cores: 2.4% of the render's CPU). A user's own setting wins.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from lipsync_render.cli.app import app, main

__all__ = ["app", "main"]
