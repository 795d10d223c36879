"""TensorFlow SavedModel sources, converted with tf2onnx.

tf2onnx runs as its own command (``python -m tf2onnx.convert --saved-model``) in a child process
of the same interpreter, which keeps TensorFlow's start-up output out of the table. The source is
run natively through the SavedModel's signature (``serving_default`` unless
``--signature`` names another); its declared inputs give the random samples their shapes, with a
dynamic first dimension as the batch.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

from modelport.convert.engines import require
from modelport.convert.errors import CONVERSION_FAILED, USAGE, ConversionError
from modelport.convert.gate import RESULT_FILENAME, Build, Builder
from modelport.convert.progress import Phases
from modelport.convert.runner import Feeds, Runnable, onnx_opset, path_size
from modelport.types import Datatype, TensorSpec

__all__ = ["is_saved_model", "saved_model_converter"]

PURPOSE = "Converting a TensorFlow SavedModel"
_QUIET_TF = {"TF_CPP_MIN_LOG_LEVEL": "3", "TF_ENABLE_ONEDNN_OPTS": "0"}


def is_saved_model(path: Path) -> bool:
    """Whether ``path`` is a SavedModel folder."""
    return path.is_dir() and any(
        (path / name).is_file() for name in ("saved_model.pb", "saved_model.pbtxt")
    )


def saved_model_converter(
    path: Path, *, opset: int | None, signature: str = "serving_default"
) -> Builder:
    """A step converting the SavedModel folder at ``path`` through ``signature``."""

    def build(folder: Path, phases: Phases) -> Build:
        for name, value in _QUIET_TF.items():
            os.environ.setdefault(name, value)
        tf = require("tensorflow", "tensorflow", PURPOSE)
        require("tf2onnx", "tensorflow", PURPOSE)
        with phases("Loading the SavedModel"):
            function = _signature(tf, path, signature)
        target = folder / RESULT_FILENAME
        with phases("Converting with tf2onnx"):
            _tf2onnx(path, target, opset, signature)
        inputs = _specs(function.structured_input_signature[1])
        outputs = _specs(function.structured_outputs)

        def run(feeds: Feeds) -> Feeds:
            result = function(**{name: tf.constant(array) for name, array in feeds.items()})
            return {name: np.asarray(result[name].numpy()) for name in sorted(result)}

        source = Runnable(
            f"SavedModel {path.name}", path, path_size(path), run, inputs=inputs, outputs=outputs
        )
        details = {"converter": "tf2onnx", "signature": signature, "opset": onnx_opset(target)}
        return Build(source, target, details=details)

    return build


def _signature(tf: Any, path: Path, signature: str) -> Any:
    try:
        loaded = tf.saved_model.load(str(path))
    except Exception as exc:
        raise ConversionError(f"TensorFlow cannot load {path}: {exc}", USAGE) from exc
    signatures = dict(loaded.signatures)
    if signature not in signatures:
        raise ConversionError(
            f"{path} has no signature {signature!r}; it has {sorted(signatures)} "
            "(choose one with --signature)",
            USAGE,
        )
    return signatures[signature]


def _tf2onnx(path: Path, target: Path, opset: int | None, signature: str) -> None:
    command = [
        sys.executable,
        "-m",
        "tf2onnx.convert",
        "--saved-model",
        str(path),
        "--signature_def",
        signature,
        "--output",
        str(target),
    ]
    if opset is not None:
        command += ["--opset", str(opset)]
    done = subprocess.run(
        command, capture_output=True, text=True, env={**os.environ, **_QUIET_TF}, check=False
    )
    if done.returncode != 0 or not target.is_file():
        tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-15:])
        raise ConversionError(f"tf2onnx could not convert {path}:\n{tail}", CONVERSION_FAILED)


def _specs(structure: Any) -> tuple[TensorSpec, ...]:
    """Input or output specs of a signature, sorted by name as the signature sorts them."""
    specs = []
    for name in sorted(structure):
        spec = structure[name]
        shape = tuple(-1 if d is None else int(d) for d in spec.shape.as_list())
        datatype = Datatype.from_numpy(np.dtype(spec.dtype.as_numpy_dtype))
        specs.append(TensorSpec(name, datatype, shape))
    return tuple(specs)
