"""A tokenizer in front of an ONNX text model: texts in, embeddings or sentiment out.

modelport serves this file as ``model.py`` in a version folder (TorchServe's handler contract),
beside ``model.onnx``, ``tokenizer.json`` and ``handler.json``. ``examples/minilm/build.py``
writes those folders. ``handler.json`` says what the model answers:

- ``{"task": "embedding", "max_length": 128}``: ``sentence_embedding``, one row of 384 floats
  per text (L2-normalised: the dot product of two rows is their cosine similarity);
- ``{"task": "sentiment", "max_length": 128, "labels": ["negative", "positive"]}``: for each
  text, ``predictions`` (the label) and ``probabilities`` (one per label).

Each request is one text: a ``str``, UTF-8 ``bytes``, or ``{"text": ...}``. The texts of a batch
are tokenized together (padded to the longest, cut at ``max_length`` tokens) and run as one
onnxruntime call. Needs ``pip install tokenizers onnxruntime``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

Array = np.ndarray[Any, Any]


class BadRequest(ValueError):
    """A request the handler cannot read: modelport (and TorchServe) answer it with 400."""

    error_code = 400


class TextHandler:
    """Tokenize, run the ONNX model, answer per text."""

    def initialize(self, context: Any) -> None:
        folder = Path(context.system_properties["model_dir"])
        settings = json.loads((folder / "handler.json").read_text(encoding="utf-8"))
        self.task: str = settings["task"]
        self.labels: list[str] = list(settings.get("labels", []))
        self.tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self.tokenizer.enable_truncation(max_length=int(settings["max_length"]))
        self.tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(settings.get("threads", 0))
        self.session = ort.InferenceSession(
            str(folder / "model.onnx"), options, providers=["CPUExecutionProvider"]
        )
        self.output = "sentence_embedding" if self.task == "embedding" else "probabilities"

    def preprocess(self, requests: list[dict[str, Any]]) -> dict[str, Array]:
        texts = [_text(request.get("data", request.get("body"))) for request in requests]
        encodings = self.tokenizer.encode_batch(texts)
        return {
            "input_ids": np.array([e.ids for e in encodings], dtype=np.int64),
            "attention_mask": np.array([e.attention_mask for e in encodings], dtype=np.int64),
        }

    def inference(self, feeds: dict[str, Array]) -> Array:
        (result,) = self.session.run([self.output], feeds)
        return np.asarray(result)

    def postprocess(self, result: Array) -> list[Any]:
        if self.task == "embedding":
            return list(result)
        picked = np.argmax(result, axis=1)
        return [
            {"predictions": self.labels[int(best)], "probabilities": row}
            for best, row in zip(picked, result, strict=True)
        ]


def _text(value: Any) -> str:
    """The text of one request, whichever way the protocol delivered it."""
    if isinstance(value, dict):
        value = value.get("text", value.get("data"))
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("utf-8")
    if isinstance(value, str):
        return value
    raise BadRequest(
        f"each request must be one text (a string, or {{'text': ...}}), not {type(value).__name__}"
    )
