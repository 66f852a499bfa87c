"""The `lipsync` command."""

from lipsync_render.cli.app import app, main

__all__ = ["app", "main"]
