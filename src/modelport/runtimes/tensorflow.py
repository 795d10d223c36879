"""The TensorFlow engine: a SavedModel (``saved_model.pb`` + ``variables/``) in a version folder.

The version folder is laid out as TF Serving lays it out (``<model>/<version>/saved_model.pb``),
so a TF Serving model repository is served as it is. The model is loaded with
``tf.saved_model.load`` (platform ``tensorflow_savedmodel``, Triton's name). Its
``serving_default`` signature is the model's signature for every protocol: inputs and outputs by
name, with their dtypes and shapes (-1 for a dimension of unknown size). Every other signature is
listed in ``signatures`` and runs through ``infer_signature`` when a TF Serving request names it
(``signature_name``); a signature modelport cannot serve (a dtype it has no datatype for, an input
of unknown rank) is left out with a warning naming it.

``infer`` wraps each numpy input in ``tf.constant`` (DT_STRING inputs take bytes), calls the
signature's concrete function and returns the outputs as numpy arrays (DT_STRING outputs become
BYTES). A TensorFlow ``InvalidArgumentError`` (and a call the signature cannot bind) is the
request's fault; any other error is a runtime failure.

``runtime.intra_op_threads`` and ``inter_op_threads`` set ``tf.config.threading``, which is
process-wide and fixed once TensorFlow has run anything: the first TensorFlow model loaded decides
them for every TensorFlow model in the server, and a log line says so.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from modelport.errors import InvalidInput, ModelLoadError, RuntimeFailure
from modelport.runtimes.base import DEFAULT_SIGNATURE_NAME, Runtime, RuntimeOptions
from modelport.types import Datatype, Signature, TensorSpec

__all__ = ["SAVED_MODEL_FILE", "SERVING_SIGNATURE", "TensorFlowRuntime"]

log = logging.getLogger(__name__)

SAVED_MODEL_FILE = "saved_model.pb"
SERVING_SIGNATURE = DEFAULT_SIGNATURE_NAME

#: TensorFlow's name for DT_STRING; every other dtype is named as numpy names it.
_TF_STRING = "string"

#: tf.config.threading can be set once per process, before TensorFlow first runs.
_THREADING_LOCK = threading.Lock()


class TensorFlowRuntime(Runtime):
    """A TensorFlow SavedModel's ``serving_default`` signature, run by TensorFlow."""

    platform = "tensorflow_savedmodel"
    default_model_filename = SAVED_MODEL_FILE

    def __init__(self, tf: Any, loaded: Any, functions: Mapping[str, _Served]) -> None:
        self._tf = tf
        #: The loaded SavedModel: holding it keeps the functions' variables alive.
        self._loaded: Any = loaded
        self._functions: dict[str, _Served] | None = dict(functions)
        self._signature = functions[SERVING_SIGNATURE].signature
        self._signatures = {name: served.signature for name, served in functions.items()}

    @classmethod
    def find_model_file(cls, version_dir: Path, filename: str | None) -> Path | None:
        """``saved_model.pb`` in the version folder, or in the folder ``filename`` names."""
        folder = version_dir / filename if filename else version_dir
        if filename == SAVED_MODEL_FILE:
            folder = version_dir
        candidate = folder / SAVED_MODEL_FILE
        return candidate if candidate.is_file() else None

    @classmethod
    def load(
        cls, model_path: Path, options: RuntimeOptions, context: str = ""
    ) -> TensorFlowRuntime:
        try:
            import tensorflow as tf  # type: ignore[import-untyped]
        except ImportError as exc:
            raise ModelLoadError(
                f"{model_path.parent.name}/{model_path.name} is a TensorFlow SavedModel, but "
                f"TensorFlow is not installed ({exc}); install it with "
                "pip install 'modelport[tensorflow]'"
            ) from exc
        _set_threads(tf, options, context or "model")
        if options.execution_providers:
            log.warning(
                "%s: runtime.execution_providers is ignored for TensorFlow SavedModels; "
                "TensorFlow places the model on the devices it sees",
                context or "model",
            )
        folder = model_path.parent if model_path.name == SAVED_MODEL_FILE else model_path
        try:
            loaded = tf.saved_model.load(str(folder))
        except Exception as exc:
            raise ModelLoadError(
                f"TensorFlow could not load the SavedModel in {folder.name}: {exc}; save it with "
                "tf.saved_model.save (or Keras model.export) into the version folder"
            ) from exc
        signatures = dict(getattr(loaded, "signatures", {}) or {})
        function = signatures.get(SERVING_SIGNATURE)
        if function is None:
            found = ", ".join(sorted(signatures)) or "none"
            raise ModelLoadError(
                f"the SavedModel in {folder.name} has no {SERVING_SIGNATURE!r} signature "
                f"(its signatures: {found}); save it with "
                f"signatures={{{SERVING_SIGNATURE!r}: <tf.function>}}"
            )
        served = {SERVING_SIGNATURE: _Served.of(tf, function, _signature(function))}
        for name in sorted(signatures):
            if name == SERVING_SIGNATURE:
                continue
            try:
                served[name] = _Served.of(tf, signatures[name], _signature(signatures[name], name))
            except ModelLoadError as exc:
                log.warning("%s: signature %r is not served: %s", context or "model", name, exc)
        if len(served) > 1:
            log.info(
                "%s: SavedModel signatures %s; %s is the default",
                context or "model",
                ", ".join(served),
                SERVING_SIGNATURE,
            )
        return cls(tf, loaded, served)

    @property
    def signature(self) -> Signature:
        return self._signature

    @property
    def signatures(self) -> Mapping[str, Signature]:
        return self._signatures

    def infer(
        self, inputs: Mapping[str, np.ndarray[Any, Any]], outputs: Sequence[str]
    ) -> dict[str, np.ndarray[Any, Any]]:
        return self.infer_signature(SERVING_SIGNATURE, inputs, outputs)

    def infer_signature(
        self,
        name: str,
        inputs: Mapping[str, np.ndarray[Any, Any]],
        outputs: Sequence[str],
    ) -> dict[str, np.ndarray[Any, Any]]:
        functions = self._functions
        if functions is None:
            raise RuntimeFailure("the model was unloaded while a request was running")
        served = functions.get(name)
        if served is None:
            return super().infer_signature(name, inputs, outputs)
        tf = self._tf
        feeds: dict[str, Any] = {}
        for input_name, dtype in served.dtypes.items():
            arr = inputs.get(input_name)
            if arr is None:
                raise InvalidInput(
                    f"missing input {input_name!r}; signature {name!r} takes {list(served.dtypes)}"
                )
            try:
                feeds[input_name] = tf.constant(arr, dtype=dtype)
            except (TypeError, ValueError) as exc:
                raise InvalidInput(
                    f"input {input_name!r} cannot be a {dtype.name} tensor ({exc}); send "
                    f"{dtype.name} values"
                ) from exc
        try:
            produced = served.function(**feeds)
        except Exception as exc:
            raise _translate(tf, exc) from exc
        result: dict[str, np.ndarray[Any, Any]] = {}
        for output_name in outputs:
            value = np.asarray(produced[output_name].numpy())  # a scalar string comes back as bytes
            if value.dtype.kind in "OSU":
                value = _to_bytes_array(value)
            result[output_name] = value
        return result

    def unload(self) -> None:
        self._functions = None
        self._loaded = None


@dataclass(frozen=True, slots=True)
class _Served:
    """One signature's concrete function, its signature and its inputs' TensorFlow dtypes."""

    function: Any
    signature: Signature
    dtypes: Mapping[str, Any]

    @classmethod
    def of(cls, tf: Any, function: Any, signature: Signature) -> _Served:
        dtypes = {spec.name: getattr(tf, _tf_name(spec.datatype)) for spec in signature.inputs}
        return cls(function, signature, dtypes)


def _tf_name(datatype: Datatype) -> str:
    return _TF_STRING if datatype is Datatype.BYTES else datatype.numpy_dtype.name


def _datatype(tf_name: str) -> Datatype | None:
    return Datatype.BYTES if tf_name == _TF_STRING else Datatype.from_dtype_name(tf_name)


def _signature(function: Any, name: str = SERVING_SIGNATURE) -> Signature:
    """Inputs and outputs of a signature function, inputs in their keyword names' order."""
    args, kwargs = function.structured_input_signature
    specs = dict(kwargs)
    for index, spec in enumerate(args):
        specs[getattr(spec, "name", None) or f"input_{index}"] = spec
    outputs = function.structured_outputs
    if not isinstance(outputs, Mapping):
        raise ModelLoadError(  # pragma: no cover - signature functions always return a dict
            f"the {name!r} signature returns {type(outputs).__name__}, not a dict "
            "of named tensors; return a dict from the signature function"
        )
    return Signature(
        inputs=tuple(_spec(key, spec, "input", name) for key, spec in specs.items()),
        outputs=tuple(_spec(key, spec, "output", name) for key, spec in outputs.items()),
    )


def _spec(name: str, spec: Any, kind: str, signature: str) -> TensorSpec:
    dtype_name = getattr(getattr(spec, "dtype", None), "name", None)
    datatype = _datatype(str(dtype_name))
    if datatype is None:
        raise ModelLoadError(
            f"{kind} {name!r} of the {signature!r} signature has type {dtype_name}, which "
            "modelport cannot serve; use numeric, bool or string tensors"
        )
    dims = spec.shape.as_list() if spec.shape.rank is not None else None
    if dims is None:
        raise ModelLoadError(
            f"{kind} {name!r} of the {signature!r} signature has no known rank; give "
            "the signature's tf.TensorSpec a shape (None for a dimension of any size)"
        )
    return TensorSpec(name, datatype, tuple(-1 if d is None else int(d) for d in dims))


def _set_threads(tf: Any, options: RuntimeOptions, context: str) -> None:
    """Apply the thread counts, which TensorFlow takes once per process."""
    wanted = {
        "intra_op": options.intra_op_threads,
        "inter_op": options.inter_op_threads,
    }
    with _THREADING_LOCK:
        for kind, count in wanted.items():
            if not count:
                continue
            threading_config = tf.config.threading
            current = getattr(threading_config, f"get_{kind}_parallelism_threads")()
            if current == count:
                continue
            try:
                getattr(threading_config, f"set_{kind}_parallelism_threads")(count)
            except RuntimeError:
                running = (
                    f"{current} threads, set by the first TensorFlow model loaded"
                    if current
                    else "TensorFlow's default thread count"
                )
                log.warning(
                    "%s: runtime.%s_threads=%d not applied: TensorFlow's thread pools are "
                    "process-wide and already running with %s; give every TensorFlow model the "
                    "same setting",
                    context,
                    kind,
                    count,
                    running,
                )
            else:
                log.info(
                    "%s: TensorFlow %s threads set to %d for the whole process",
                    context,
                    kind.replace("_", "-"),
                    count,
                )


def _to_bytes_array(arr: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    flat = [v.encode("utf-8") if isinstance(v, str) else bytes(v) for v in arr.flat]
    out = np.empty(len(flat), dtype=object)
    out[:] = flat
    return out.reshape(arr.shape)


def _translate(tf: Any, exc: Exception) -> Exception:
    """TensorFlow's complaints about the request's values become 400s; the rest are failures."""
    if isinstance(exc, tf.errors.InvalidArgumentError | TypeError | ValueError):
        text = _reason(str(getattr(exc, "message", None) or exc))
        return InvalidInput(
            f"the model rejected the input: {text}; check the input shapes and values against "
            "the model's metadata"
        )
    log.error("TensorFlow failed while running a request: %s", exc)
    return RuntimeFailure("the model failed while running this request; see the server log")


#: Lines of a TensorFlow error message that locate the failure rather than say what it is.
_LOCATION_PREFIXES = ("graph execution error", "detected at node", "<stack traces", "[[", "file ")


def _reason(message: str) -> str:
    """The line of a TensorFlow error message that says what was wrong, without node names."""
    lines = [line.strip() for line in message.splitlines()]
    useful = [line for line in lines if line and not line.lower().startswith(_LOCATION_PREFIXES)]
    reason = useful[-1] if useful else message.strip()
    return reason.split(" [Op:", 1)[0].split("\t [[", 1)[0].strip()
