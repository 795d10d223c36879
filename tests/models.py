"""Small ONNX models the tests build on the fly (nothing is downloaded)."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "examples"))

import build_models  # noqa: E402  (examples/build_models.py)

OPSET = build_models.OPSET
save = build_models.save
mnist_model = build_models.mnist_model
tabular_model = build_models.tabular_model

#: Every V2 datatype an ONNX model can take, with its ONNX element type.
ONNX_TYPES = {
    "BOOL": TensorProto.BOOL,
    "UINT8": TensorProto.UINT8,
    "UINT16": TensorProto.UINT16,
    "UINT32": TensorProto.UINT32,
    "UINT64": TensorProto.UINT64,
    "INT8": TensorProto.INT8,
    "INT16": TensorProto.INT16,
    "INT32": TensorProto.INT32,
    "INT64": TensorProto.INT64,
    "FP16": TensorProto.FLOAT16,
    "FP32": TensorProto.FLOAT,
    "FP64": TensorProto.DOUBLE,
    "BYTES": TensorProto.STRING,
}


def _finish(graph: onnx.GraphProto) -> onnx.ModelProto:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = build_models.IR_VERSION
    onnx.checker.check_model(model)
    return model


def identity_model(datatype: str, width: int = 3) -> onnx.ModelProto:
    """``input`` [-1, width] of ``datatype`` copied to ``output``."""
    kind = ONNX_TYPES[datatype]
    graph = helper.make_graph(
        [helper.make_node("Identity", ["input"], ["output"])],
        f"identity_{datatype.lower()}",
        [helper.make_tensor_value_info("input", kind, ["batch", width])],
        [helper.make_tensor_value_info("output", kind, ["batch", width])],
    )
    return _finish(graph)


def constant_model(value: float) -> onnx.ModelProto:
    """``x`` FP32 [-1, 1] -> ``y`` = x * 0 + value: every answer reveals the version's value."""
    graph = helper.make_graph(
        [
            helper.make_node("Mul", ["x", "zero"], ["x0"]),
            helper.make_node("Add", ["x0", "value"], ["y"]),
        ],
        "constant",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 1])],
        [
            numpy_helper.from_array(np.zeros(1, np.float32), "zero"),
            numpy_helper.from_array(np.array([value], np.float32), "value"),
        ],
    )
    return _finish(graph)


def slow_model(width: int = 256) -> onnx.ModelProto:
    """``x`` FP32 [-1, width] and ``steps`` INT64 [1]: runs a matmul loop ``steps`` times.

    The request chooses how long it runs, so tests can hold a request in flight.
    """
    rng = np.random.default_rng(3)
    weight = (rng.standard_normal((width, width)) / np.sqrt(width)).astype(np.float32)
    body = helper.make_graph(
        [
            helper.make_node("MatMul", ["h_in", "w"], ["h_mm"]),
            helper.make_node("Tanh", ["h_mm"], ["h_out"]),
            helper.make_node("Identity", ["cond_in"], ["cond_out"]),
        ],
        "body",
        [
            helper.make_tensor_value_info("i", TensorProto.INT64, []),
            helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
            helper.make_tensor_value_info("h_in", TensorProto.FLOAT, None),
        ],
        [
            helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
            helper.make_tensor_value_info("h_out", TensorProto.FLOAT, None),
        ],
    )
    graph = helper.make_graph(
        [
            helper.make_node("Squeeze", ["steps", "axis0"], ["trip"]),
            helper.make_node("Loop", ["trip", "true", "x"], ["y"], body=body),
        ],
        "slow",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", width]),
            helper.make_tensor_value_info("steps", TensorProto.INT64, [1]),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", width])],
        [
            numpy_helper.from_array(weight, "w"),
            numpy_helper.from_array(np.array([0], np.int64), "axis0"),
            numpy_helper.from_array(np.array(True), "true"),
        ],
    )
    return _finish(graph)


def string_model() -> onnx.ModelProto:
    """``text`` BYTES [-1] -> ``text_bytes`` (same strings) and ``length`` INT64 [-1, 1]."""
    graph = helper.make_graph(
        [
            helper.make_node("Identity", ["text"], ["text_bytes"]),
            helper.make_node("Shape", ["text"], ["length"]),
        ],
        "strings",
        [helper.make_tensor_value_info("text", TensorProto.STRING, ["batch"])],
        [
            helper.make_tensor_value_info("text_bytes", TensorProto.STRING, ["batch"]),
            helper.make_tensor_value_info("length", TensorProto.INT64, [1]),
        ],
    )
    return _finish(graph)


def build_example_repository(root: Path) -> Path:
    """The example repository (mnist 1 and 2, tabular 1) with its config files, under ``root``."""
    build_models.build(root)
    for config in (ROOT / "examples" / "models").glob("*/config.yaml"):
        target = root / config.parent.name / "config.yaml"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(config, target)
    return root


def slow_batched_model(width: int = 64) -> onnx.ModelProto:
    """Like ``slow_model``, with a batch dimension on every input: ``x`` FP32 [-1, width] and
    ``steps`` INT64 [-1, 1]; the loop runs max(steps) times."""
    rng = np.random.default_rng(4)
    weight = (rng.standard_normal((width, width)) / np.sqrt(width)).astype(np.float32)
    body = helper.make_graph(
        [
            helper.make_node("MatMul", ["h_in", "w"], ["h_mm"]),
            helper.make_node("Tanh", ["h_mm"], ["h_out"]),
            helper.make_node("Identity", ["cond_in"], ["cond_out"]),
        ],
        "body",
        [
            helper.make_tensor_value_info("i", TensorProto.INT64, []),
            helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
            helper.make_tensor_value_info("h_in", TensorProto.FLOAT, None),
        ],
        [
            helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
            helper.make_tensor_value_info("h_out", TensorProto.FLOAT, None),
        ],
    )
    graph = helper.make_graph(
        [
            helper.make_node("ReduceMax", ["steps"], ["trip"], keepdims=0),
            helper.make_node("Loop", ["trip", "true", "x"], ["y"], body=body),
        ],
        "slow_batched",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", width]),
            helper.make_tensor_value_info("steps", TensorProto.INT64, ["batch", 1]),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", width])],
        [
            numpy_helper.from_array(weight, "w"),
            numpy_helper.from_array(np.array(True), "true"),
        ],
    )
    return _finish(graph)


def token_sum_model() -> onnx.ModelProto:
    """``ids`` INT64 [-1, -1] -> ``doubled`` INT64 [-1, -1] (ids * 2) and ``total`` INT64 [-1]
    (the sum of each row): a variable-length model whose answers show what each caller sent."""
    graph = helper.make_graph(
        [
            helper.make_node("Mul", ["ids", "two"], ["doubled"]),
            helper.make_node("ReduceSum", ["ids", "axis1"], ["total"], keepdims=0),
        ],
        "token_sum",
        [helper.make_tensor_value_info("ids", TensorProto.INT64, ["batch", "seq"])],
        [
            helper.make_tensor_value_info("doubled", TensorProto.INT64, ["batch", "seq"]),
            helper.make_tensor_value_info("total", TensorProto.INT64, ["batch"]),
        ],
        [
            numpy_helper.from_array(np.array(2, np.int64), "two"),
            numpy_helper.from_array(np.array([1], np.int64), "axis1"),
        ],
    )
    return _finish(graph)


#: Two rows of three values of every V2 datatype, with each type's extremes.
DATATYPE_SAMPLES = {
    "BOOL": np.array([[True, False, True], [False, False, True]]),
    "UINT8": np.array([[0, 7, 255], [1, 2, 3]], np.uint8),
    "UINT16": np.array([[0, 7, 65535], [1, 2, 3]], np.uint16),
    "UINT32": np.array([[0, 7, 2**32 - 1], [1, 2, 3]], np.uint32),
    "UINT64": np.array([[0, 7, 2**64 - 1], [1, 2, 3]], np.uint64),
    "INT8": np.array([[-128, 0, 127], [1, 2, 3]], np.int8),
    "INT16": np.array([[-32768, 0, 32767], [1, 2, 3]], np.int16),
    "INT32": np.array([[-(2**31), 0, 2**31 - 1], [1, 2, 3]], np.int32),
    "INT64": np.array([[-(2**63), 0, 2**63 - 1], [1, 2, 3]], np.int64),
    "FP16": np.array([[0.5, -2.0, 65504.0], [1.0, 0.25, 3.0]], np.float16),
    "FP32": np.array([[0.1, -2.5, 3.4e38], [1e-30, 0.0, 7.0]], np.float32),
    "FP64": np.array([[0.1, -2.5, 1.7e308], [1e-300, 0.0, 7.0]], np.float64),
    "BYTES": np.array([[b"a", b"", "caf\u00e9".encode()], [b"x y", b"0", b"zz"]], dtype=object),
}
