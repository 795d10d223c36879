"""TF Serving's gRPC messages to modelport's values and back, for ``tfserving.grpc``.

Predict inputs are TensorProtos (``tensor_proto`` reads them) checked against the signature by
alias and dtype; Classify, Regress and MultiInference read tf.Example features into the model's
inputs as the REST surface reads JSON examples (``codec.feature_column``), and answer with
ClassificationResult and RegressionResult messages. Error texts keep TF Serving's wording where
clients may look for it, followed by what to send instead.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence, Sized
from typing import Any, cast

import numpy as np

from modelport._pb.tensorflow import error_codes_pb2, tensor_pb2
from modelport._pb.tensorflow.example_pb2 import Example, Feature
from modelport._pb.tfserving import apis_pb2 as apis
from modelport.core.dataplane import ServedVersion
from modelport.errors import InvalidInput, Unimplemented
from modelport.protocols.tensors import array_from_json
from modelport.protocols.tfserving import codec
from modelport.protocols.tfserving.codec import DEFAULT_SIGNATURE
from modelport.protocols.tfserving.tensor_proto import (
    TF_DATATYPES,
    datatype_name,
    tensor_proto_to_array,
)
from modelport.types import Datatype, Signature, TensorSpec, VersionStatus

__all__ = [
    "CLASSIFY_METHOD",
    "PREDICT_METHOD",
    "REGRESS_METHOD",
    "SIGNATURE_DEF",
    "check_metadata_fields",
    "example_inputs",
    "fill_classes",
    "fill_regressions",
    "fill_status",
    "output_filter",
    "predict_inputs",
    "signature_def_map",
    "task_methods",
    "task_outputs",
]

PREDICT_METHOD = "tensorflow/serving/predict"
CLASSIFY_METHOD = "tensorflow/serving/classify"
REGRESS_METHOD = "tensorflow/serving/regress"
#: The one metadata field TF Serving serves.
SIGNATURE_DEF = "signature_def"

Array = np.ndarray[Any, Any]


# ---- predict -------------------------------------------------------------------------------------


def predict_inputs(
    inputs: Mapping[str, tensor_pb2.TensorProto], target: ServedVersion, signature: Signature
) -> dict[str, Array]:
    """The request's tensors as numpy arrays, after checking names and dtypes."""
    expected = signature.input_names
    if len(inputs) != len(expected):
        sent = sorted(inputs)
        extra = sorted(set(sent) - set(expected))
        missing = sorted(set(expected) - set(sent))
        raise InvalidInput(
            f"input size does not match signature: {len(sent)}!={len(expected)} "
            f"len({_set(sent)}) != len({_set(sorted(expected))}). Sent extra: {_set(extra)}. "
            f"Missing but required: {_set(missing)}."
        )
    decoded: dict[str, Array] = {}
    for alias, proto in inputs.items():
        spec = signature.input(alias)
        if spec is None:
            raise InvalidInput(
                f"input tensor alias not found in signature: {alias}. Inputs expected to be in "
                f"the set {_set(sorted(expected))}."
            )
        _check_dtype(proto, spec, target)
        decoded[alias] = tensor_proto_to_array(proto, alias)
    return decoded


def _set(names: Sequence[str]) -> str:
    return "{" + ",".join(names) + "}"


def _check_dtype(proto: tensor_pb2.TensorProto, spec: TensorSpec, target: ServedVersion) -> None:
    expected = TF_DATATYPES[spec.datatype]
    if proto.dtype != expected:
        raise InvalidInput(
            f"input {spec.name!r} is {datatype_name(proto.dtype)}, but model {target.model!r} "
            f"version {target.version} expects {datatype_name(expected)}; send it as "
            f"{datatype_name(expected)}"
        )


def output_filter(aliases: Sequence[str], signature: Signature) -> list[str] | None:
    """The outputs ``output_filter`` names (None: all of them), each checked and named once."""
    if not aliases:
        return None
    seen: set[str] = set()
    for alias in aliases:
        if signature.output(alias) is None:
            raise InvalidInput(
                f"output tensor alias not found in signature: {alias} Outputs expected to be "
                f"in the set {_set(sorted(signature.output_names))}."
            )
        if alias in seen:
            raise InvalidInput(f"duplicate output tensor alias: {alias}; name each output once")
        seen.add(alias)
    return list(aliases)


# ---- classify and regress ------------------------------------------------------------------------


def example_inputs(source: apis.Input, signature: Signature) -> dict[str, Array]:
    """The model's inputs from the tf.Example features of a Classify/Regress ``Input``.

    Each input is the feature of the same name: the example's own, else the context's.
    """
    kind = source.WhichOneof("kind")
    context: Mapping[str, Feature] = {}
    if kind == "example_list":
        examples: Sequence[Example] = source.example_list.examples
    elif kind == "example_list_with_context":
        examples = source.example_list_with_context.examples
        context = source.example_list_with_context.context.features.feature
    else:
        raise InvalidInput(
            "Input is empty; send the examples in input.example_list (or "
            "input.example_list_with_context)"
        )
    if not examples:
        raise InvalidInput("the input holds no examples; send at least one tensorflow.Example")
    return {
        spec.name: codec.feature_column(
            spec, _feature_rows(spec.name, examples, context), _rows_to_array, "the context"
        )
        for spec in signature.inputs
    }


def _feature_rows(
    name: str, examples: Sequence[Example], context: Mapping[str, Feature]
) -> list[Sized | None]:
    rows: list[Sized | None] = []
    shared = _feature_values(context[name]) if name in context else None
    for example in examples:
        features = example.features.feature
        rows.append(_feature_values(features[name]) if name in features else shared)
    return rows


def _feature_values(feature: Feature) -> Sized:
    kind = feature.WhichOneof("kind")
    if kind == "float_list":
        return np.array(feature.float_list.value, dtype=np.float32)
    if kind == "int64_list":
        return np.array(feature.int64_list.value, dtype=np.int64)
    if kind == "bytes_list":
        return list(feature.bytes_list.value)
    return ()


def _rows_to_array(rows: list[Any], spec: TensorSpec) -> Array:
    if spec.datatype is not Datatype.BYTES:
        return array_from_json(rows, spec.datatype, spec.name)
    if any(isinstance(row, np.ndarray) and row.size for row in rows):
        raise InvalidInput(
            f"input {spec.name!r} is DT_STRING; send feature {spec.name!r} as a bytes_list"
        )
    out = np.empty((len(rows), len(rows[0])), dtype=object)
    for index, row in enumerate(rows):
        out[index, :] = list(row)
    return out


def fill_classes(out: apis.ClassificationResult, scores: Array, labels: list[list[str]]) -> None:
    for row, names in zip(scores.astype(np.float32).tolist(), labels, strict=True):
        classes = out.classifications.add().classes
        for label, score in zip(names, row, strict=True):
            classes.add(label=label, score=score)


def fill_regressions(out: apis.RegressionResult, values: Array) -> None:
    for value in values.astype(np.float32).tolist():
        out.regressions.add(value=value)


def task_methods(tasks: Sequence[apis.InferenceTask]) -> list[str]:
    """Each task's method, after checking the tasks fit in one inference."""
    if not tasks:
        raise InvalidInput(
            f"MultiInferenceRequest has no tasks; add an InferenceTask for {CLASSIFY_METHOD} "
            f"and/or {REGRESS_METHOD}"
        )
    names = {task.model_spec.name for task in tasks}
    if "" in names:
        raise InvalidInput("Found ModelSpec with an empty model name; name the model in each task")
    if len(names) > 1:
        raise InvalidInput(
            "All ModelSpecs in a MultiInferenceRequest must access the same model name; the "
            f"tasks name {', '.join(sorted(names))}"
        )
    methods: list[str] = []
    for task in tasks:
        signature = task.model_spec.signature_name
        if signature not in ("", DEFAULT_SIGNATURE):
            raise InvalidInput(
                f"Requested signature not found in model graph: {signature}; this model has "
                f'only "{DEFAULT_SIGNATURE}"'
            )
        if task.method_name not in (CLASSIFY_METHOD, REGRESS_METHOD):
            raise Unimplemented(
                f"Unsupported signature method_name: {task.method_name}; MultiInference runs "
                f"{CLASSIFY_METHOD} and {REGRESS_METHOD}"
            )
        if task.method_name in methods:
            raise InvalidInput(
                f"Duplicate evaluation of signature: {DEFAULT_SIGNATURE} "
                f"({task.method_name} twice); ask for each method once"
            )
        methods.append(task.method_name)
    return methods


def task_outputs(methods: Sequence[str], target: ServedVersion) -> list[str]:
    """The outputs the tasks read, for one inference."""
    wanted: list[str] = []
    if CLASSIFY_METHOD in methods:
        wanted += codec.classify_outputs(target.signature, target.config)
    if REGRESS_METHOD in methods:
        wanted.append(codec.regress_output(target.signature, target.config))
    return wanted


# ---- metadata and status -------------------------------------------------------------------------


def check_metadata_fields(fields: Sequence[str]) -> None:
    if not fields:
        raise InvalidInput(
            "GetModelMetadataRequest must specify at least one metadata_field; ask for "
            f'"{SIGNATURE_DEF}"'
        )
    for field in fields:
        if field != SIGNATURE_DEF:
            raise InvalidInput(
                f'Metadata field {field} is not supported; the only one is "{SIGNATURE_DEF}"'
            )


def signature_def_map(signatures: Mapping[str, Signature]) -> apis.SignatureDefMap:
    """The model's signatures as TF Serving's metadata carries them."""
    out = apis.SignatureDefMap()
    for name, signature in signatures.items():
        signature_def = out.signature_def[name]
        for spec in signature.inputs:
            _tensor_info(signature_def.inputs[spec.name], spec)
        for spec in signature.outputs:
            _tensor_info(signature_def.outputs[spec.name], spec)
        signature_def.method_name = PREDICT_METHOD
    return out


def _tensor_info(out: tensor_pb2.TensorInfo, spec: TensorSpec) -> None:
    out.name = spec.name
    out.dtype = TF_DATATYPES[spec.datatype]
    out.tensor_shape.SetInParent()
    for size in spec.shape:
        out.tensor_shape.dim.add().size = size


def fill_status(out: apis.ModelVersionStatus, status: VersionStatus) -> None:
    tf = codec.version_status(status)
    out.version = tf.version
    out.state = cast(apis.ModelVersionStatus.State, apis.ModelVersionStatus.State.Value(tf.state))
    out.status.error_code = cast(error_codes_pb2.Code, error_codes_pb2.Code.Value(tf.error_code))
    out.status.error_message = tf.error_message
