"""Small PyTorch models the tests build on the fly, saved as TorchScript or torch.export files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from torch import nn

#: config.yaml declarations of each model's TorchScript signature.
MLP_CONFIG: dict[str, Any] = {
    "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 4]}],
    "outputs": [{"name": "y", "datatype": "FP32", "shape": [-1, 3]}],
}
PAIR_CONFIG: dict[str, Any] = {
    "inputs": [
        {"name": "a", "datatype": "FP32", "shape": [-1, 4]},
        {"name": "b", "datatype": "FP32", "shape": [-1, 4]},
    ],
    "outputs": [
        {"name": "sum", "datatype": "FP32", "shape": [-1, 4]},
        {"name": "product", "datatype": "FP32", "shape": [-1, 4]},
    ],
}


class Mlp(nn.Module):
    """4 features in, 3 scores out."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.layers = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class Pair(nn.Module):
    """Two inputs, two outputs returned as a tuple: (a + b, a * b)."""

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return a + b, a * b


class PairDict(nn.Module):
    """Two inputs, two outputs returned as a dict: {"sum": a + b, "product": a * b}."""

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"product": a * b, "sum": a + b}


def save_torchscript(module: nn.Module, path: Path) -> Path:
    """``torch.jit.script(module)`` written with ``torch.jit.save``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.jit.save(torch.jit.script(module.eval()), str(path))
    return path


def save_exported(module: nn.Module, example: tuple[torch.Tensor, ...], path: Path) -> Path:
    """``torch.export.export`` with a dynamic first dimension on every input, then saved."""
    path.parent.mkdir(parents=True, exist_ok=True)
    batch = torch.export.Dim("batch", min=1, max=1024)
    program = torch.export.export(
        module.eval(), example, dynamic_shapes=tuple({0: batch} for _ in example)
    )
    torch.export.save(program, str(path))
    return path


def write_config(model_dir: Path, config: dict[str, Any]) -> None:
    model_dir.mkdir(parents=True, exist_ok=True)
    (model_dir / "config.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")


def run(module: nn.Module, *arrays: np.ndarray[Any, Any]) -> Any:
    """What ``module`` itself returns for numpy ``arrays``, with tensors turned into numpy."""
    with torch.no_grad():
        result = module.eval()(*(torch.from_numpy(np.array(a)) for a in arrays))
    if isinstance(result, dict):
        return {key: value.numpy() for key, value in result.items()}
    if isinstance(result, tuple):
        return tuple(value.numpy() for value in result)
    return result.numpy()


def rows(count: int, width: int = 4, seed: int = 0) -> np.ndarray[Any, Any]:
    """``count`` rows of ``width`` FP32 values."""
    return np.random.default_rng(seed).normal(size=(count, width)).astype(np.float32)
