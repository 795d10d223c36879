"""Importing an optional engine, or saying which extra installs it."""

from __future__ import annotations

import importlib
from types import ModuleType

from modelport.convert.errors import USAGE, ConversionError

__all__ = ["require"]


def require(module: str, extra: str, purpose: str) -> ModuleType:
    """Import ``module``; if it is missing, raise a ``ConversionError`` naming ``extra``."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ConversionError(
            f"{purpose} needs {module.partition('.')[0]}, which is not installed ({exc}); "
            f"install it with: pip install 'modelport[{extra}]'",
            USAGE,
        ) from exc
