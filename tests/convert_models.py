"""Models the conversion tests start from, built on the fly (nothing is downloaded)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from tests.models import OPSET, build_models, save

IR_VERSION = build_models.IR_VERSION

__all__ = [
    "NET_SOURCE",
    "mlp_onnx",
    "modelport",
    "overflow_onnx",
]

#: A PyTorch module file: two inputs, a dict of two outputs, a constructor argument.
NET_SOURCE = '''
import torch
from torch import nn


class Net(nn.Module):
    """Scores 4 classes from ``width`` features, each scaled by ``mask``."""

    def __init__(self, width: int = 16, hidden: int = 32) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(width, hidden), nn.ReLU(), nn.Linear(hidden, 4))

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> dict[str, torch.Tensor]:
        scores = self.body(x * mask)
        return {"scores": scores, "norm": scores.norm(dim=1, keepdim=True)}


class Tiny(nn.Module):
    """Three features to two scores; says what to export with."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(3, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x)

    def example_inputs(self) -> tuple[torch.Tensor]:
        return (torch.ones(2, 3),)
'''


def _graph_model(graph: onnx.GraphProto) -> onnx.ModelProto:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model)
    return model


def mlp_onnx(path: Path, width: int = 16, hidden: int = 64, classes: int = 4) -> Path:
    """``x`` FP32 [batch, width] -> ``scores`` FP32 [batch, classes]: MatMul, Add, Relu twice."""
    rng = np.random.default_rng(11)
    w1 = (rng.standard_normal((width, hidden)) / np.sqrt(width)).astype(np.float32)
    b1 = (rng.standard_normal(hidden) * 0.1).astype(np.float32)
    w2 = (rng.standard_normal((hidden, classes)) / np.sqrt(hidden)).astype(np.float32)
    b2 = (rng.standard_normal(classes) * 0.1).astype(np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "w1"], ["h0"]),
            helper.make_node("Add", ["h0", "b1"], ["h1"]),
            helper.make_node("Relu", ["h1"], ["h2"]),
            helper.make_node("MatMul", ["h2", "w2"], ["s0"]),
            helper.make_node("Add", ["s0", "b2"], ["scores"]),
        ],
        "mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", width])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["batch", classes])],
        [
            numpy_helper.from_array(w1, "w1"),
            numpy_helper.from_array(b1, "b1"),
            numpy_helper.from_array(w2, "w2"),
            numpy_helper.from_array(b2, "b2"),
        ],
    )
    save(_graph_model(graph), path)
    return path


def overflow_onnx(path: Path, width: int = 8) -> Path:
    """``x`` FP32 [batch, width] -> ``y`` = (x @ W) * 1e-5 with every weight 1e5, which is
    sum(x) in FP32. FP16 tops out at 65504, so an FP16 copy clips the weights and answers
    0.655 x sum(x): a conversion that runs, and is wrong."""
    weight = np.full((width, 2), 1e5, np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "w"], ["big"]),
            helper.make_node("Mul", ["big", "scale"], ["y"]),
        ],
        "overflow",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", width])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 2])],
        [
            numpy_helper.from_array(weight, "w"),
            numpy_helper.from_array(np.array(1e-5, np.float32), "scale"),
        ],
    )
    save(_graph_model(graph), path)
    return path


def modelport(*args: str | Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run the ``modelport`` command line in a child process."""
    return subprocess.run(
        [sys.executable, "-m", "modelport", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
