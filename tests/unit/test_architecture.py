"""The layering rules of architecture.md, checked on the source: who may import what."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "modelport"
FRAMEWORKS = {"starlette", "fastapi", "uvicorn", "grpc", "httptools", "uvloop"}
ENGINES = {"onnxruntime", "torch", "tensorflow", "sklearn"}


def imports_of(path: Path) -> set[str]:
    """Top-level module names and modelport sub-packages a file imports."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        for name in names:
            parts = name.split(".")
            found.add(".".join(parts[:2]) if parts[0] == "modelport" else parts[0])
    return found


def modules(*folders: str) -> list[Path]:
    paths: list[Path] = []
    for folder in folders:
        target = SRC / folder
        paths.extend(sorted(target.rglob("*.py")) if target.is_dir() else [target])
    return paths


def ids(paths: list[Path]) -> list[str]:
    return [str(p.relative_to(SRC)) for p in paths]


CORE = modules("core")


@pytest.mark.parametrize("path", CORE, ids=ids(CORE))
def test_core_is_free_of_frameworks_engines_and_upper_layers(path: Path) -> None:
    found = imports_of(path)
    forbidden = (
        FRAMEWORKS
        | ENGINES
        | {
            "modelport.lifecycle",
            "modelport.protocols",
            "modelport.app",
            "modelport.cli",
        }
    )
    assert not found & forbidden


BASE = modules("types.py", "errors.py", "config.py", "model_config.py")


@pytest.mark.parametrize("path", BASE, ids=ids(BASE))
def test_base_modules_import_only_the_standard_library_numpy_and_pydantic(path: Path) -> None:
    allowed_third_party = {"numpy", "ml_dtypes", "pydantic", "pydantic_settings", "yaml"}
    modelport = {"modelport.types", "modelport.errors", "modelport.model_config"}
    for name in imports_of(path):
        if name.startswith("modelport"):
            assert name in modelport, name
        else:
            assert name in allowed_third_party or _stdlib(name), name


def _stdlib(name: str) -> bool:
    import sys

    return name in sys.stdlib_module_names or name == "__future__"


ALL = sorted(p for p in SRC.rglob("*.py") if "_pb" not in p.parts)


@pytest.mark.parametrize("path", ALL, ids=ids(ALL))
def test_engines_only_in_their_runtime_and_the_server_only_in_app(path: Path) -> None:
    found = imports_of(path)
    relative = str(path.relative_to(SRC))
    # the conversion commands save onnxruntime's optimized and quantized graphs
    if relative not in ("runtimes/onnx.py", "convert/optimize.py", "convert/quantize.py"):
        assert "onnxruntime" not in found
    if relative != "app.py" and not relative.startswith("bench/"):  # the load generator's loop
        assert not found & {"uvicorn", "uvloop"}


LOWER = modules("lifecycle", "runtimes", "protocols")


@pytest.mark.parametrize("path", LOWER, ids=ids(LOWER))
def test_no_layer_imports_the_composition_root(path: Path) -> None:
    found = imports_of(path)
    assert not found & {"modelport.app", "modelport.cli"}
    relative = path.relative_to(SRC).parts[0]
    if relative in ("lifecycle", "runtimes"):
        assert "modelport.protocols" not in found
    if relative == "runtimes":
        assert not found & {"modelport.lifecycle", "modelport.core"}
    if relative == "protocols":
        assert not found & {"modelport.lifecycle", "modelport.runtimes"}
