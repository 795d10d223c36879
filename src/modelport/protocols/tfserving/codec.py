"""TF Serving REST bodies: predict in row and columnar form, classify and regress, and metadata.

Clients never send dtypes: the model's signature types the JSON. Row format (``instances``)
answers with ``predictions``; columnar format (``inputs``) answers with ``outputs``. With one
output the name is left out, as TF Serving does; string outputs whose name ends in ``_bytes`` are
written as ``{"b64": ...}``.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Mapping, Sequence, Sized
from dataclasses import dataclass
from typing import Any

import numpy as np

from modelport.errors import FailedPrecondition, InvalidInput, ModelportError
from modelport.model_config import ModelConfig
from modelport.protocols.tensors import array_from_json, dump_outputs_json
from modelport.types import (
    DEFAULT_SIGNATURE_NAME,
    Datatype,
    ModelState,
    Signature,
    TensorSpec,
    VersionStatus,
)

__all__ = [
    "DEFAULT_SIGNATURE",
    "TF_DTYPES",
    "TFVersionStatus",
    "classifications",
    "classify_outputs",
    "decode_examples",
    "decode_predict",
    "encode_classify",
    "encode_predict",
    "encode_regress",
    "feature_column",
    "predict_result",
    "regress_output",
    "regression_values",
    "select_signature",
    "signature_def",
    "signature_named",
    "version_status",
]

DEFAULT_SIGNATURE = DEFAULT_SIGNATURE_NAME

_PREDICT_KEYS = frozenset({"signature_name", "instances", "inputs"})
_EXAMPLE_KEYS = frozenset({"signature_name", "context", "examples"})

#: Each datatype as TensorFlow's ``DataType`` enum names it.
TF_DTYPES = {
    Datatype.BOOL: "DT_BOOL",
    Datatype.UINT8: "DT_UINT8",
    Datatype.UINT16: "DT_UINT16",
    Datatype.UINT32: "DT_UINT32",
    Datatype.UINT64: "DT_UINT64",
    Datatype.INT8: "DT_INT8",
    Datatype.INT16: "DT_INT16",
    Datatype.INT32: "DT_INT32",
    Datatype.INT64: "DT_INT64",
    Datatype.FP16: "DT_HALF",
    Datatype.FP32: "DT_FLOAT",
    Datatype.FP64: "DT_DOUBLE",
    Datatype.BF16: "DT_BFLOAT16",
    Datatype.BYTES: "DT_STRING",
}


def select_signature(doc: dict[str, Any], signatures: Mapping[str, Signature]) -> str:
    """The signature a body's ``signature_name`` names (empty or missing: ``serving_default``)."""
    name = doc.get("signature_name", "")
    if not isinstance(name, str):
        raise InvalidInput("'signature_name' must be a string")
    template = 'Serving signature name: "{name}" not found in signature def.'
    return signature_named(name, signatures, InvalidInput, template)


def signature_named(
    name: str,
    signatures: Mapping[str, Signature],
    error: type[ModelportError],
    template: str,
) -> str:
    """``name``, or ``serving_default`` for an empty name.

    When the model lacks it, raise ``error`` with ``template`` (TF Serving's wording, with a
    ``{name}`` field) followed by the signatures the model has.
    """
    key = name or DEFAULT_SIGNATURE
    if key not in signatures:
        known = ", ".join(f'"{signature}"' for signature in signatures)
        has = f"has only {known}" if len(signatures) == 1 else f"has the signatures {known}"
        raise error(
            f"{template.format(name=name)} This model {has}; leave the signature name empty "
            "for serving_default or name one of these"
        )
    return key


# ---- predict ---------------------------------------------------------------------------------


def decode_predict(
    doc: dict[str, Any], signature: Signature
) -> tuple[dict[str, np.ndarray[Any, Any]], bool]:
    """Inputs from a predict body; the flag says whether it used the row format."""
    unknown = set(doc) - _PREDICT_KEYS
    if unknown:
        raise InvalidInput(
            f"unknown field {sorted(unknown)[0]!r} in the predict request; use 'instances' or "
            "'inputs', and optionally 'signature_name'"
        )
    if "instances" in doc and "inputs" in doc:
        raise InvalidInput("the request has both 'instances' and 'inputs'; send only one of them")
    if "instances" in doc:
        return _decode_rows(doc["instances"], signature), True
    if "inputs" in doc:
        return _decode_columns(doc["inputs"], signature), False
    raise InvalidInput("Missing 'inputs' or 'instances' key in the predict request")


def _is_b64(value: Any) -> bool:
    return isinstance(value, dict) and len(value) == 1 and "b64" in value


def _to_array(values: Any, spec: TensorSpec) -> np.ndarray[Any, Any]:
    if spec.datatype is not Datatype.BYTES and _holds_b64(values):
        raise InvalidInput(
            f"input {spec.name!r} is {spec.datatype}; b64 values are only for string inputs"
        )
    return array_from_json(values, spec.datatype, spec.name, allow_b64=True)


def _holds_b64(values: Any) -> bool:
    while isinstance(values, list) and values:
        values = values[0]
    return _is_b64(values)


def _decode_rows(instances: Any, signature: Signature) -> dict[str, np.ndarray[Any, Any]]:
    if not isinstance(instances, list) or not instances:
        raise InvalidInput("'instances' must be a non-empty list, one entry per example")
    specs = signature.inputs
    first = instances[0]
    named = isinstance(first, dict) and not _is_b64(first)
    if not named:
        if len(specs) != 1:
            raise InvalidInput(
                f"the model has {len(specs)} inputs ({', '.join(signature.input_names)}); each "
                "instance must be an object naming them"
            )
        return {specs[0].name: _to_array(instances, specs[0])}
    expected = set(signature.input_names)
    columns: dict[str, list[Any]] = {name: [] for name in signature.input_names}
    for index, row in enumerate(instances):
        if not isinstance(row, dict) or _is_b64(row) or set(row) != expected:
            got = sorted(row) if isinstance(row, dict) else type(row).__name__
            raise InvalidInput(
                f"instance {index} must be an object with exactly the inputs "
                f"{sorted(expected)}; it has {got}"
            )
        for name, value in row.items():
            columns[name].append(value)
    return {spec.name: _to_array(columns[spec.name], spec) for spec in specs}


def _decode_columns(inputs: Any, signature: Signature) -> dict[str, np.ndarray[Any, Any]]:
    specs = signature.inputs
    if not isinstance(inputs, dict) or _is_b64(inputs):
        if len(specs) != 1:
            raise InvalidInput(
                f"the model has {len(specs)} inputs ({', '.join(signature.input_names)}); "
                "'inputs' must be an object naming them"
            )
        return {specs[0].name: _to_array(inputs, specs[0])}
    result = {}
    for spec in specs:
        if spec.name not in inputs:
            raise InvalidInput(f"Missing named input: {spec.name} in 'inputs' object")
        result[spec.name] = _to_array(inputs[spec.name], spec)
    return result


def encode_predict(outputs: dict[str, np.ndarray[Any, Any]], row_format: bool) -> bytes:
    """The predict response body: ``predictions`` (row format) or ``outputs`` (columnar)."""
    doc = {"predictions" if row_format else "outputs": predict_result(outputs, row_format)}
    return dump_outputs_json(doc, outputs.values())


def predict_result(outputs: dict[str, np.ndarray[Any, Any]], row_format: bool) -> Any:
    """The value of ``predictions`` (one entry per example) or of ``outputs`` (columnar).

    With one output the name is left out. Numeric outputs stay numpy arrays: write the value
    with ``dump_outputs_json`` so that NaN and infinities come out as TF Serving writes them.
    """
    values = {name: _output_values(name, arr) for name, arr in outputs.items()}
    if row_format:
        return _rows(outputs, values)
    if len(values) == 1:
        return next(iter(values.values()))
    return values


def _rows(outputs: dict[str, np.ndarray[Any, Any]], values: dict[str, Any]) -> Any:
    sizes = set()
    for name, arr in outputs.items():
        if arr.ndim == 0:
            raise FailedPrecondition(
                f"output {name!r} is a scalar, which the row format cannot split into "
                "predictions; send the request with 'inputs' (columnar format)"
            )
        sizes.add(arr.shape[0])
    if len(sizes) > 1:
        raise FailedPrecondition(
            "the outputs have different batch sizes (inconsistent batch size); send the request "
            "with 'inputs' (columnar format)"
        )
    if len(values) == 1:
        return next(iter(values.values()))
    (count,) = sizes
    return [{name: value[i] for name, value in values.items()} for i in range(count)]


def _output_values(name: str, arr: np.ndarray[Any, Any]) -> Any:
    if arr.dtype != object:
        if arr.dtype.name == "bfloat16":
            return arr.astype(np.float32)
        return arr
    as_b64 = name.endswith("_bytes")
    flat = [_string_value(item, as_b64) for item in arr.flat]
    return np.array(flat, dtype=object).reshape(arr.shape).tolist() if arr.ndim else flat[0]


def _string_value(item: Any, as_b64: bool) -> Any:
    raw = item if isinstance(item, bytes) else str(item).encode("utf-8")
    if not as_b64:
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            pass
    return {"b64": base64.b64encode(raw).decode("ascii")}


# ---- classify and regress --------------------------------------------------------------------


def decode_examples(doc: dict[str, Any], signature: Signature) -> dict[str, np.ndarray[Any, Any]]:
    """Inputs from a classify/regress body: each model input is a feature of every example."""
    unknown = set(doc) - _EXAMPLE_KEYS
    if unknown:
        raise InvalidInput(
            f"unknown field {sorted(unknown)[0]!r}; a classify or regress request has "
            "'examples' and optionally 'context' and 'signature_name'"
        )
    examples = doc.get("examples")
    if not isinstance(examples, list) or not examples:
        raise InvalidInput("'examples' must be a non-empty list of feature objects")
    context = doc.get("context", {})
    if not isinstance(context, dict):
        raise InvalidInput("'context' must be an object of features shared by all examples")
    return {
        spec.name: feature_column(spec, _feature_rows(spec, examples, context), _to_array)
        for spec in signature.inputs
    }


def _feature_rows(
    spec: TensorSpec, examples: list[Any], context: dict[str, Any]
) -> list[list[Any] | None]:
    rows: list[list[Any] | None] = []
    for index, example in enumerate(examples):
        if not isinstance(example, dict):
            raise InvalidInput(f"example {index} must be an object of features")
        value = example.get(spec.name, context.get(spec.name))
        if value is not None:
            value = value if isinstance(value, list) else [value]
            if any(isinstance(v, list | dict) and not _is_b64(v) for v in value):
                raise InvalidInput(f"feature {spec.name!r} of example {index} must be a flat list")
        rows.append(value)
    return rows


#: Turns one feature's rows (a list per example, all of one length) into a 2-D array.
RowsToArray = Callable[[list[Any], TensorSpec], np.ndarray[Any, Any]]


def feature_column(
    spec: TensorSpec,
    rows: Sequence[Sized | None],
    to_array: RowsToArray,
    context: str = "'context'",
) -> np.ndarray[Any, Any]:
    """The model input ``spec`` from the feature of the same name in every example.

    ``rows[i]`` holds example i's values of the feature (taken from the context when the
    example has none; None when neither has it), in whatever form the protocol decoded;
    ``to_array`` converts the rows to a [examples, values] array of the input's datatype. The
    values of one example fill the input's dimensions after the batch dimension.
    """
    present: list[Sized] = []
    for index, row in enumerate(rows):
        if row is None:
            raise InvalidInput(
                f"example {index} has no feature {spec.name!r} (nor does {context}); the model "
                f"reads {spec.describe()}"
            )
        present.append(row)
    if len({len(row) for row in present}) != 1:
        raise InvalidInput(f"feature {spec.name!r} has a different length in different examples")
    flat = to_array(present, spec)
    return flat.reshape(_example_shape(spec, len(present), len(present[0])))


def _example_shape(spec: TensorSpec, count: int, length: int) -> tuple[int, ...]:
    inner = list(spec.shape[1:])
    fixed = 1
    for dim in inner:
        fixed *= dim if dim != -1 else 1
    unknown = inner.count(-1)
    misfit = unknown > 1 or (unknown == 0 and fixed != length)
    if unknown == 1 and (fixed == 0 or length % fixed):
        misfit = True
    if misfit:
        raise InvalidInput(
            f"feature {spec.name!r} has {length} values per example, which does not fit the "
            f"input shape {list(spec.shape)}"
        )
    if unknown:
        inner[inner.index(-1)] = length // fixed
    return (count, *inner)


def _pick_output(
    signature: Signature, configured: str | None, task: str, fits: Any, setting: str
) -> TensorSpec:
    if configured is not None:
        spec = signature.output(configured)
        assert spec is not None, "the loader checks configured outputs"
        return spec
    candidates = [s for s in signature.outputs if fits(s)]
    if len(candidates) != 1:
        found = "none" if not candidates else ", ".join(s.name for s in candidates)
        raise FailedPrecondition(
            f"this model cannot serve :{task}: it needs exactly one suitable output, found "
            f"{found} among {', '.join(signature.output_names)}; name it in config.yaml under "
            f"{setting}"
        )
    return candidates[0]


def _is_float(spec: TensorSpec) -> bool:
    return spec.datatype in (Datatype.FP16, Datatype.FP32, Datatype.FP64, Datatype.BF16)


def classify_outputs(signature: Signature, config: ModelConfig) -> list[str]:
    """The outputs ``:classify`` reads: the scores, and the classes if configured."""
    scores = _pick_output(
        signature,
        config.classification.scores,
        "classify",
        lambda s: _is_float(s) and len(s.shape) == 2,
        "classification.scores",
    )
    names = [scores.name]
    if config.classification.classes is not None:
        names.append(config.classification.classes)
    return names


def regress_output(signature: Signature, config: ModelConfig) -> str:
    """The output ``:regress`` returns."""
    spec = _pick_output(
        signature,
        config.regression.output,
        "regress",
        lambda s: _is_float(s) and (len(s.shape) == 1 or (len(s.shape) == 2 and s.shape[1] == 1)),
        "regression.output",
    )
    return spec.name


def encode_classify(
    outputs: dict[str, np.ndarray[Any, Any]], names: Sequence[str], config: ModelConfig
) -> bytes:
    """``{"results": [[[label, score], ...] per example]}``."""
    scores, labels = classifications(outputs, names, config)
    results = [
        [[labels[row][k], scores[row, k]] for k in range(scores.shape[1])]
        for row in range(scores.shape[0])
    ]
    return dump_outputs_json({"results": results}, [scores])


def classifications(
    outputs: dict[str, np.ndarray[Any, Any]], names: Sequence[str], config: ModelConfig
) -> tuple[np.ndarray[Any, Any], list[list[str]]]:
    """The scores [examples, classes] of a classify call, and the label of each score."""
    scores = outputs[names[0]]
    if scores.ndim != 2:
        raise FailedPrecondition(f"output {names[0]!r} must be [batch, classes] to classify")
    return scores, _class_labels(outputs, names, config, scores.shape)


def _class_labels(
    outputs: dict[str, np.ndarray[Any, Any]],
    names: Sequence[str],
    config: ModelConfig,
    shape: tuple[int, ...],
) -> list[list[str]]:
    if len(names) > 1:
        classes = outputs[names[1]]
        if classes.shape != shape:
            raise FailedPrecondition(
                f"output {names[1]!r} has shape {list(classes.shape)}; classes must match the "
                f"scores' shape {list(shape)}"
            )
        return [[_label_text(v) for v in row] for row in classes]
    labels = config.classification.labels or [str(k) for k in range(shape[1])]
    if len(labels) != shape[1]:
        raise FailedPrecondition(
            f"config.yaml lists {len(labels)} classification labels but the model scores "
            f"{shape[1]} classes"
        )
    return [labels] * shape[0]


def _label_text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def encode_regress(outputs: dict[str, np.ndarray[Any, Any]], name: str) -> bytes:
    """``{"results": [value per example]}``."""
    return dump_outputs_json({"results": regression_values(outputs, name)}, [outputs[name]])


def regression_values(outputs: dict[str, np.ndarray[Any, Any]], name: str) -> np.ndarray[Any, Any]:
    """One value per example: the first of each row of the regress output."""
    values = outputs[name]
    return values.reshape(values.shape[0], -1)[:, 0]


# ---- status -----------------------------------------------------------------------------------

#: ModelState as TF Serving's ModelVersionStatus.State; a failed version reports END + its error.
_TF_STATE = {
    ModelState.START: "START",
    ModelState.LOADING: "LOADING",
    ModelState.AVAILABLE: "AVAILABLE",
    ModelState.UNLOADING: "UNLOADING",
    ModelState.END: "END",
    ModelState.FAILED: "END",
}


@dataclass(frozen=True, slots=True)
class TFVersionStatus:
    """One ``ModelVersionStatus`` as TF Serving reports it, by enum names."""

    version: int
    state: str
    error_code: str
    error_message: str


def version_status(status: VersionStatus) -> TFVersionStatus:
    """A version's state in TF Serving's terms: a version that failed to load is END with
    error code UNKNOWN and the reason."""
    failed = status.state is ModelState.FAILED
    return TFVersionStatus(
        version=status.version,
        state=_TF_STATE[status.state],
        error_code="UNKNOWN" if failed else "OK",
        error_message=(status.error or "") if failed else "",
    )


# ---- metadata --------------------------------------------------------------------------------


def _tensor_info(spec: TensorSpec) -> dict[str, Any]:
    return {
        "dtype": TF_DTYPES[spec.datatype],
        "tensor_shape": {
            "dim": [{"size": str(d), "name": ""} for d in spec.shape],
            "unknown_rank": False,
        },
        "name": spec.name,
    }


def signature_def(signatures: Mapping[str, Signature]) -> dict[str, Any]:
    """Every signature's SignatureDef, rendered the way TF Serving's REST API does."""
    return {
        name: {
            "inputs": {s.name: _tensor_info(s) for s in signature.inputs},
            "outputs": {s.name: _tensor_info(s) for s in signature.outputs},
            "method_name": "tensorflow/serving/predict",
            "defaults": {},
        }
        for name, signature in signatures.items()
    }
