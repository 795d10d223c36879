"""Build the example model repository, deterministically (same bytes on every run).

    python examples/build_models.py [examples/models]

It writes:

- ``mnist/1/model.onnx`` and ``mnist/2/model.onnx``: an MLP 784 -> 128 (ReLU) -> 10 (softmax),
  float32, dynamic batch, the shape TF Serving's MNIST tutorial uses; input ``images``
  [-1, 784], output ``scores`` [-1, 10]. The two versions have different fixed weights.
- ``tabular/1/model.onnx``: two named inputs of different dtypes, ``features`` FP32 [-1, 4] and
  ``category`` INT64 [-1, 1], and two outputs, ``probabilities`` FP32 [-1, 3] (a classifier)
  and ``score`` FP32 [-1, 1] (a regressor).

The ``config.yaml`` files beside them are part of the repository and are not generated.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
IR_VERSION = 8


def _finish(graph: onnx.GraphProto) -> onnx.ModelProto:
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="modelport-examples",
        producer_version="1",
    )
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model)
    return model


def mnist_model(seed: int) -> onnx.ModelProto:
    """The MNIST MLP with weights drawn from ``seed``."""
    rng = np.random.default_rng(seed)
    w1 = (rng.standard_normal((784, 128)) * np.sqrt(2 / 784)).astype(np.float32)
    b1 = (rng.standard_normal(128) * 0.01).astype(np.float32)
    w2 = (rng.standard_normal((128, 10)) * np.sqrt(2 / 128)).astype(np.float32)
    b2 = (rng.standard_normal(10) * 0.01).astype(np.float32)
    nodes = [
        helper.make_node("MatMul", ["images", "w1"], ["h0"]),
        helper.make_node("Add", ["h0", "b1"], ["h1"]),
        helper.make_node("Relu", ["h1"], ["h2"]),
        helper.make_node("MatMul", ["h2", "w2"], ["l0"]),
        helper.make_node("Add", ["l0", "b2"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["scores"], axis=-1),
    ]
    graph = helper.make_graph(
        nodes,
        "mnist_mlp",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["batch", 784])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["batch", 10])],
        [
            numpy_helper.from_array(w1, "w1"),
            numpy_helper.from_array(b1, "b1"),
            numpy_helper.from_array(w2, "w2"),
            numpy_helper.from_array(b2, "b2"),
        ],
    )
    return _finish(graph)


def tabular_model(seed: int = 7) -> onnx.ModelProto:
    """A classifier and regressor over ``features`` (FP32 [-1, 4]) and ``category`` (INT64)."""
    rng = np.random.default_rng(seed)
    w_cls = rng.standard_normal((5, 3)).astype(np.float32)
    b_cls = rng.standard_normal(3).astype(np.float32)
    w_reg = rng.standard_normal((4, 1)).astype(np.float32)
    category_weight = np.array([0.5], dtype=np.float32)
    nodes = [
        helper.make_node("Cast", ["category"], ["category_f"], to=TensorProto.FLOAT),
        helper.make_node("Concat", ["features", "category_f"], ["joined"], axis=1),
        helper.make_node("MatMul", ["joined", "w_cls"], ["c0"]),
        helper.make_node("Add", ["c0", "b_cls"], ["c1"]),
        helper.make_node("Softmax", ["c1"], ["probabilities"], axis=-1),
        helper.make_node("MatMul", ["features", "w_reg"], ["r0"]),
        helper.make_node("Mul", ["category_f", "category_weight"], ["r1"]),
        helper.make_node("Add", ["r0", "r1"], ["score"]),
    ]
    graph = helper.make_graph(
        nodes,
        "tabular",
        [
            helper.make_tensor_value_info("features", TensorProto.FLOAT, ["batch", 4]),
            helper.make_tensor_value_info("category", TensorProto.INT64, ["batch", 1]),
        ],
        [
            helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", 3]),
            helper.make_tensor_value_info("score", TensorProto.FLOAT, ["batch", 1]),
        ],
        [
            numpy_helper.from_array(w_cls, "w_cls"),
            numpy_helper.from_array(b_cls, "b_cls"),
            numpy_helper.from_array(w_reg, "w_reg"),
            numpy_helper.from_array(category_weight, "category_weight"),
        ],
    )
    return _finish(graph)


def save(model: onnx.ModelProto, path: Path) -> None:
    """Write ``model`` to ``path``, creating folders; atomic, so a server never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_bytes(model.SerializeToString())
    partial.replace(path)


def build(root: Path) -> None:
    """Write every example model under ``root``."""
    save(mnist_model(seed=1), root / "mnist" / "1" / "model.onnx")
    save(mnist_model(seed=2), root / "mnist" / "2" / "model.onnx")
    save(tabular_model(), root / "tabular" / "1" / "model.onnx")


def main(argv: list[str]) -> int:
    root = Path(argv[1]) if len(argv) > 1 else Path(__file__).parent / "models"
    build(root)
    print(f"built the example models in {root}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
