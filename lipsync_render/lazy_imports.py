"""Module attributes imported on first use (PEP 562), so importing a package stays cheap."""

from __future__ import annotations

import importlib
from collections.abc import Callable


def lazy_attributes(modules: dict[str, str]) -> Callable[[str], object]:
    """A module ``__getattr__`` giving each name in ``modules`` from the module it maps to, imported when first
    asked for: ``__getattr__ = lazy_attributes({"Renderer": "lipsync_render.rendering.renderer"})``."""

    def __getattr__(name: str) -> object:
        if name in modules:
            return getattr(importlib.import_module(modules[name]), name)
        raise AttributeError(name)

    return __getattr__
