"""``modelport quantize``: int8 with onnxruntime.quantization, or fp16 with its float16 converter.

- ``dynamic-int8``: ``quantize_dynamic``, int8 weights, activations quantized per call. No
  calibration data; best for MatMul/Gemm-heavy models (MLPs, transformers).

Int8 weights get a scale per output channel by default (``per_channel``), which keeps
transformers far closer to fp32 than one scale per tensor (all-MiniLM-L6-v2's embeddings: least
cosine similarity 0.989 against 0.935); ``--per-tensor`` gives the smaller per-tensor form.
- ``static-int8``: ``quantize_static`` in the QDQ format, int8 weights and activations, with
  activation ranges calibrated (MinMax) on ``--calibration`` (a ``.npy``/``.npz`` of inputs, one
  row per example), else on ``--sample``, else on the gate's random inputs (noted in the report:
  random data rarely calibrates a real model well).
- ``fp16``: onnxruntime's ``convert_float_to_float16``. By default inputs and outputs stay FP32
  (``keep_io_types``), so existing clients and the served signature do not change and the model
  casts at its edges; ``--fp16-io`` makes them FP16 too.

Each model is pre-processed with onnxruntime's shape inference first, as its quantization guide
recommends.
"""

from __future__ import annotations

import tempfile
from contextlib import chdir
from pathlib import Path
from typing import Any

import numpy as np

from modelport.convert.errors import CONVERSION_FAILED, USAGE, ConversionError
from modelport.convert.gate import RESULT_FILENAME, Build, Builder
from modelport.convert.progress import Phases
from modelport.convert.runner import Feeds, Runnable, onnx_runnable
from modelport.convert.samples import (
    cast_feeds,
    generate_feeds,
    load_sample_file,
    match_feeds,
)

__all__ = ["MODES", "CalibrationReader", "quantizer"]

MODES = ("dynamic-int8", "static-int8", "fp16")

#: Calibration rows used at most; more rarely change MinMax ranges and cost time.
MAX_CALIBRATION_ROWS = 512

FP16_MAX = 65504.0


class CalibrationReader:
    """onnxruntime's calibration data reader protocol (``get_next``) over in-memory inputs: one
    feed per row with a batch dimension of 1, or (``per_row`` false, for models whose first
    dimension is fixed) the whole arrays as one feed."""

    def __init__(self, feeds: Feeds, per_row: bool = True) -> None:
        rows = min((len(array) for array in feeds.values()), default=0)
        self.rows = min(rows, MAX_CALIBRATION_ROWS)
        self._feeds = feeds
        self._per_row = per_row
        self._next = 0

    def get_next(self) -> dict[str, np.ndarray[Any, Any]] | None:
        """The next feed, or None after the last."""
        if not self._per_row:
            self._per_row, self._next = True, self.rows  # one feed, then done
            return self._feeds if self.rows else None
        if self._next >= self.rows:
            return None
        row = self._next
        self._next += 1
        return {name: array[row : row + 1] for name, array in self._feeds.items()}


def quantizer(
    model: Path,
    mode: str,
    *,
    calibration: Path | None = None,
    sample: Path | None = None,
    keep_io_types: bool = True,
    per_channel: bool = True,
    batch_size: int = 16,
    seed: int = 0,
) -> Builder:
    """A step that writes ``model`` quantized in ``mode`` into the build folder."""
    if mode not in MODES:
        raise ConversionError(f"--mode {mode!r} is not one of {', '.join(MODES)}", USAGE)
    if not model.is_file():
        raise ConversionError(f"{model} is not a file; give the path of an .onnx model", USAGE)

    def build(folder: Path, phases: Phases) -> Build:
        with phases("Loading the source model"):
            source = onnx_runnable(model, model.name)
        target = folder / RESULT_FILENAME
        notes: list[str] = []
        details: dict[str, Any] = {"mode": mode}
        with phases(f"Quantizing ({mode})"):
            if mode == "fp16":
                notes.extend(_fp16(model, target, keep_io_types))
                details["keep_io_types"] = keep_io_types
            else:
                prepared = folder / "prepared.onnx"
                _preprocess(model, prepared)
                details["per_channel"] = per_channel
                if mode == "dynamic-int8":
                    _dynamic(prepared, target, per_channel)
                else:
                    reader, origin = _calibration(source, calibration, sample, batch_size, seed)
                    details["calibration"] = {"origin": origin, "rows": reader.rows}
                    if calibration is None and sample is None:
                        notes.append(
                            "calibrated on random inputs; pass --calibration with representative "
                            "inputs for a model that sees real data"
                        )
                    _static(prepared, target, reader, per_channel)
                prepared.unlink()
        return Build(source, target, details=details, notes=notes)

    return build


def _preprocess(model: Path, target: Path) -> None:
    from onnxruntime.quantization.shape_inference import quant_pre_process

    source, prepared = str(model.resolve()), str(target.resolve())
    # When symbolic shape inference gives up, onnxruntime saves its partial model (and the
    # weights beside it) into the working folder: keep that out of the user's folder.
    with tempfile.TemporaryDirectory(prefix="modelport-quantize-") as scratch, chdir(scratch):
        try:
            quant_pre_process(source, prepared, skip_symbolic_shape=False)
        except Exception as exc:  # symbolic shape inference fails on some graphs: plain inference
            try:
                quant_pre_process(source, prepared, skip_symbolic_shape=True)
            except Exception as again:
                raise _failed(model, again) from exc


def _dynamic(model: Path, target: Path, per_channel: bool) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    try:
        quantize_dynamic(
            str(model), str(target), weight_type=QuantType.QInt8, per_channel=per_channel
        )
    except Exception as exc:
        raise _failed(model, exc) from exc


def _static(model: Path, target: Path, reader: CalibrationReader, per_channel: bool) -> None:
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    if reader.rows == 0:
        raise ConversionError("the calibration data holds no rows", USAGE)
    try:
        quantize_static(
            str(model),
            str(target),
            reader,
            quant_format=QuantFormat.QDQ,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            per_channel=per_channel,
        )
    except Exception as exc:
        raise _failed(model, exc) from exc


def _fp16(model: Path, target: Path, keep_io_types: bool) -> list[str]:
    """Convert to FP16; return a note when weights fall outside FP16's range (they are clipped)."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    proto = onnx.load(str(model))
    clipped = _out_of_fp16_range(proto)
    try:
        converted = convert_float_to_float16(proto, keep_io_types=keep_io_types)
    except Exception as exc:
        raise _failed(model, exc) from exc
    onnx.save(converted, str(target))
    if not clipped:
        return []
    return [f"fp16: {clipped} weights exceed FP16's largest value (65504) and were clipped to it"]


def _out_of_fp16_range(proto: Any) -> int:
    from onnx import TensorProto, numpy_helper

    count = 0
    for tensor in proto.graph.initializer:
        if tensor.data_type in (TensorProto.FLOAT, TensorProto.DOUBLE):
            count += int(np.count_nonzero(np.abs(numpy_helper.to_array(tensor)) > FP16_MAX))
    return count


def _calibration(
    source: Runnable, calibration: Path | None, sample: Path | None, batch_size: int, seed: int
) -> tuple[CalibrationReader, str]:
    names = [spec.name for spec in source.inputs or ()]
    path = calibration or sample
    if path is not None:
        feeds = match_feeds(load_sample_file(path), names, str(path))
        origin = str(path)
    else:
        feeds = generate_feeds(source.inputs or (), batch_size=max(batch_size, 64), seed=seed)
        origin = f"random inputs (seed {seed})"
    per_row = all(spec.shape[:1] == (-1,) for spec in source.inputs or ())
    return CalibrationReader(cast_feeds(feeds, source.inputs), per_row), origin


def _failed(model: Path, exc: Exception) -> ConversionError:
    return ConversionError(
        f"onnxruntime could not quantize {model}: {type(exc).__name__}: {exc}", CONVERSION_FAILED
    )
