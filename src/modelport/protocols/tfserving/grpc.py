"""TF Serving's gRPC API: ``tensorflow.serving.PredictionService`` and ``ModelService``.

==============================================  ==========================================
``PredictionService/Predict``                   named TensorProto inputs -> named outputs
``PredictionService/Classify``                  tf.Example features -> (label, score) lists
``PredictionService/Regress``                   tf.Example features -> one value per example
``PredictionService/MultiInference``            classify and regress from one inference
``PredictionService/GetModelMetadata``          the ``serving_default`` SignatureDef
``ModelService/GetModelStatus``                 the state of each version
``ModelService/HandleReloadConfigRequest``      serve the models of a new model config
==============================================  ==========================================

A ``ModelSpec`` names the model, and a version (an ``Int64Value``: unset means the newest
available) or a version label; a label made of digits that the model does not define is taken
as a version number, as perf_analyzer sends its ``-x`` version as a label. Every model has one
signature, ``serving_default`` (an empty ``signature_name`` means it too), which serves predict,
classify and regress. Responses echo the model's name, the version that answered and the
signature. Errors keep TF Serving's wording where clients may look for it, and say what to send
instead.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from google.protobuf import text_format

from modelport._pb.tensorflow import error_codes_pb2
from modelport._pb.tfserving import apis_pb2 as apis
from modelport.core.dataplane import DataPlane, Lease, ServedVersion, served_signatures
from modelport.errors import FailedPrecondition, InvalidInput, LabelNotFound, NotFound
from modelport.protocols.grpc import CallContext, Method, Service
from modelport.protocols.tfserving import codec, grpc_codec
from modelport.protocols.tfserving.codec import DEFAULT_SIGNATURE
from modelport.protocols.tfserving.tensor_proto import fill_tensor_proto
from modelport.types import InferRequest

__all__ = ["MODEL_SERVICE", "PREDICTION_SERVICE", "PROTOCOL", "TFServingGrpc"]

PREDICTION_SERVICE = "tensorflow.serving.PredictionService"
MODEL_SERVICE = "tensorflow.serving.ModelService"
#: How the metrics name this surface.
PROTOCOL = "tfserving_grpc"

T = TypeVar("T")


class TFServingGrpc:
    """The TF Serving gRPC surface over one dataplane."""

    def __init__(self, dataplane: DataPlane) -> None:
        self._dataplane = dataplane

    def services(self) -> list[Service]:
        """``PredictionService`` and ``ModelService``, for a ``GrpcApp``."""
        prediction = [
            Method("Predict", apis.PredictRequest, unary=self.predict),
            Method("Classify", apis.ClassificationRequest, unary=self.classify),
            Method("Regress", apis.RegressionRequest, unary=self.regress),
            Method("MultiInference", apis.MultiInferenceRequest, unary=self.multi_inference),
            Method("GetModelMetadata", apis.GetModelMetadataRequest, unary=self.metadata),
        ]
        model = [
            Method("GetModelStatus", apis.GetModelStatusRequest, unary=self.status),
            Method("HandleReloadConfigRequest", apis.ReloadConfigRequest, unary=self.reload_config),
        ]
        return [Service(PREDICTION_SERVICE, prediction), Service(MODEL_SERVICE, model)]

    # ---- PredictionService ------------------------------------------------------------------

    async def predict(
        self, request: apis.PredictRequest, context: CallContext
    ) -> apis.PredictResponse:
        """Run the model on the request's named tensors; answer the outputs it asks for."""
        spec = _model_spec(request)
        with self._lease(spec, PROTOCOL) as target:
            signatures = served_signatures(target)
            chosen = codec.signature_named(
                spec.signature_name,
                signatures,
                FailedPrecondition,
                'Serving signature key "{name}" not found.',
            )
            inputs = grpc_codec.predict_inputs(request.inputs, target, signatures[chosen])
            wanted = grpc_codec.output_filter(request.output_filter, signatures[chosen])
            infer_request = InferRequest(inputs, wanted, signature=chosen)
            result = await self._dataplane.infer(target, infer_request)
            response = apis.PredictResponse()
            for name, arr in result.outputs.items():
                fill_tensor_proto(response.outputs[name], arr, name)
            _echo(response.model_spec, spec.name, target.version, chosen)
            return response

    async def classify(
        self, request: apis.ClassificationRequest, context: CallContext
    ) -> apis.ClassificationResponse:
        """Score each tf.Example of the input against the model's classes."""
        spec = _model_spec(request)
        with self._lease(spec, PROTOCOL) as target:
            chosen = _example_signature(spec.signature_name, target)
            signature = served_signatures(target)[chosen]
            names = codec.classify_outputs(signature, target.config)
            inputs = grpc_codec.example_inputs(request.input, signature)
            infer_request = InferRequest(inputs, names, signature=chosen)
            result = await self._dataplane.infer(target, infer_request)
            scores, labels = codec.classifications(result.outputs, names, target.config)
            response = apis.ClassificationResponse()
            grpc_codec.fill_classes(response.result, scores, labels)
            _echo(response.model_spec, spec.name, target.version, chosen)
            return response

    async def regress(
        self, request: apis.RegressionRequest, context: CallContext
    ) -> apis.RegressionResponse:
        """One value per tf.Example of the input."""
        spec = _model_spec(request)
        with self._lease(spec, PROTOCOL) as target:
            chosen = _example_signature(spec.signature_name, target)
            signature = served_signatures(target)[chosen]
            name = codec.regress_output(signature, target.config)
            inputs = grpc_codec.example_inputs(request.input, signature)
            infer_request = InferRequest(inputs, [name], signature=chosen)
            result = await self._dataplane.infer(target, infer_request)
            response = apis.RegressionResponse()
            grpc_codec.fill_regressions(
                response.result, codec.regression_values(result.outputs, name)
            )
            _echo(response.model_spec, spec.name, target.version, chosen)
            return response

    async def multi_inference(
        self, request: apis.MultiInferenceRequest, context: CallContext
    ) -> apis.MultiInferenceResponse:
        """Classify and/or regress the same examples with one inference.

        As in TF Serving, every task names the same model, and the first task's version is
        the one used. Each method may appear once: both read ``serving_default``.
        """
        methods = grpc_codec.task_methods(request.tasks)
        spec = request.tasks[0].model_spec
        with self._lease(spec, PROTOCOL) as target:
            wanted = grpc_codec.task_outputs(methods, target)
            inputs = grpc_codec.example_inputs(request.input, target.signature)
            result = await self._dataplane.infer(target, InferRequest(inputs, wanted))
            response = apis.MultiInferenceResponse()
            for task, method in zip(request.tasks, methods, strict=True):
                answer = response.results.add()
                if method == grpc_codec.CLASSIFY_METHOD:
                    names = codec.classify_outputs(target.signature, target.config)
                    scores, labels = codec.classifications(result.outputs, names, target.config)
                    grpc_codec.fill_classes(answer.classification_result, scores, labels)
                else:
                    name = codec.regress_output(target.signature, target.config)
                    values = codec.regression_values(result.outputs, name)
                    grpc_codec.fill_regressions(answer.regression_result, values)
                _echo(answer.model_spec, task.model_spec.name, target.version, DEFAULT_SIGNATURE)
            return response

    async def metadata(
        self, request: apis.GetModelMetadataRequest, context: CallContext
    ) -> apis.GetModelMetadataResponse:
        """Every signature's SignatureDef, packed in an ``Any`` under ``signature_def``."""
        spec = _model_spec(request)
        grpc_codec.check_metadata_fields(request.metadata_field)
        with self._lease(spec) as target:
            signatures, version = served_signatures(target), target.version
        response = apis.GetModelMetadataResponse()
        response.model_spec.name = spec.name
        response.model_spec.version.value = version
        response.metadata[grpc_codec.SIGNATURE_DEF].Pack(grpc_codec.signature_def_map(signatures))
        return response

    # ---- ModelService -----------------------------------------------------------------------

    async def status(
        self, request: apis.GetModelStatusRequest, context: CallContext
    ) -> apis.GetModelStatusResponse:
        """The state of the version the spec names, or of every version of the model."""
        name, version, label = _target(_model_spec(request))
        statuses = _numeric_label(lambda v, lb: self._dataplane.status(name, v, lb), version, label)
        if not statuses:
            raise NotFound(f"Could not find any versions of model {name}")
        response = apis.GetModelStatusResponse()
        for status in statuses:
            grpc_codec.fill_status(response.model_version_status.add(), status)
        return response

    async def reload_config(
        self, request: apis.ReloadConfigRequest, context: CallContext
    ) -> apis.ReloadConfigResponse:
        """Serve exactly the models of ``config.model_config_list``, once their loads settle."""
        kind = request.config.WhichOneof("config") if request.HasField("config") else None
        if kind != "model_config_list":
            raise InvalidInput(
                (
                    "ReloadConfigRequest.config is empty"
                    if kind is None
                    else "custom_model_config is not supported"
                )
                + "; list the models to serve in config.model_config_list"
            )
        await self._dataplane.reload_config(text_format.MessageToString(request.config))
        response = apis.ReloadConfigResponse()
        response.status.error_code = error_codes_pb2.OK
        return response

    def _lease(self, spec: apis.ModelSpec, protocol: str | None = None) -> Lease:
        name, version, label = _target(spec)
        return _numeric_label(
            lambda v, lb: self._dataplane.lease(name, v, lb, protocol), version, label
        )


# ---- model specs ---------------------------------------------------------------------------------


def _model_spec(request: Any) -> apis.ModelSpec:
    if not request.HasField("model_spec"):
        raise InvalidInput("Missing ModelSpec; set model_spec.name to the model to use")
    spec: apis.ModelSpec = request.model_spec
    return spec


def _target(spec: apis.ModelSpec) -> tuple[str, int | None, str | None]:
    """The model name, version and label a spec names."""
    if not spec.name:
        raise InvalidInput("model_spec.name is empty; set it to the model to use")
    choice = spec.WhichOneof("version_choice")
    if choice == "version":
        return spec.name, spec.version.value, None
    if choice == "version_label":
        return spec.name, None, spec.version_label
    return spec.name, None, None


def _numeric_label(
    call: Callable[[int | None, str | None], T], version: int | None, label: str | None
) -> T:
    """``call(version, label)``; a digits-only label the model lacks is tried as a version."""
    try:
        return call(version, label)
    except LabelNotFound:
        if label is None or not (label.isascii() and label.isdigit()) or len(label) > 18:
            raise
        return call(int(label), None)


def _echo(out: apis.ModelSpec, name: str, version: int, signature: str) -> None:
    out.name = name
    out.version.value = version
    out.signature_name = signature


def _example_signature(name: str, target: ServedVersion) -> str:
    """The signature a classify or regress request names, in TF Serving's wording if absent."""
    return codec.signature_named(
        name,
        served_signatures(target),
        InvalidInput,
        "No signature was found with the name: {name}.",
    )
