"""Every module says what it exports, and everything it says it exports exists."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src"
MODULES = sorted(
    ".".join(p.relative_to(SRC).with_suffix("").parts)
    for p in (SRC / "modelport").rglob("*.py")
    if "_pb" not in p.parts and p.name not in ("__main__.py",)
)


@pytest.mark.parametrize("name", MODULES)
def test_all_names_exist(name: str) -> None:
    module = importlib.import_module(name.removesuffix(".__init__"))
    exported = getattr(module, "__all__", None)
    if name.endswith("__init__") and exported is None:
        return  # namespace-only packages
    assert exported is not None, f"{name} has no __all__"
    for item in exported:
        assert hasattr(module, item), f"{name}.__all__ names {item}, which does not exist"


def test_version() -> None:
    import modelport

    assert modelport.__version__.count(".") == 2
