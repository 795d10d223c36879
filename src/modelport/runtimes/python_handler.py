"""Custom Python handlers (platform ``python``): a ``model.py`` with TorchServe's handler contract.

The file is imported under a module name of its own, with the version folder on ``sys.path`` while
the version is loaded, so it can import the files beside it. The handler is, in order:

- the class or function ``config.yaml``'s ``handler:`` names;
- else the one class the file defines that has ``handle``, or ``preprocess``, ``inference`` and
  ``postprocess`` (a ``BaseHandler`` subclass has all of them);
- else a module-level ``handle(data, context)`` function.

A class is instantiated without arguments and its ``initialize(context)`` (or ``load(context)``)
runs once, at load time; a function is called once as ``handle(None, context)``, as TorchServe does.

Each row of the input tensors is one request of the batch the handler receives: a dict with the
first input's row under ``data`` and ``body`` (TorchServe's names) and every input's row under its
own name. A row of a BYTES input is the element itself (``bytes``, or what TorchServe's API
decoded: the parsed JSON of an ``application/json`` body, the text of a ``text/*`` one); a row of a
numeric input is a numpy array. ``handle(data, context)`` (or preprocess, inference, postprocess)
returns one result per request. Without ``inputs:``/``outputs:`` in ``config.yaml`` the model takes
one BYTES input ``data`` and gives one BYTES output ``output``; a BYTES output keeps ``bytes`` and
``str`` results as bytes and writes any other result as JSON; a numeric output stacks the results;
with several outputs each result is a dict keyed by output name.

Handler calls of one version run one at a time, in the worker pool (never on the event loop).
"""

from __future__ import annotations

import contextlib
import importlib.util
import inspect
import itertools
import logging
import re
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from types import ModuleType
from typing import Any, Self

import numpy as np
import orjson

from modelport.errors import InvalidInput, ModelLoadError, ModelportError, RuntimeFailure
from modelport.model_config import TensorOverride
from modelport.runtimes.base import Runtime, RuntimeOptions
from modelport.runtimes.declared import declared_signature
from modelport.runtimes.handler_context import import_ts_context, make_context, set_requests
from modelport.types import Datatype, Signature, TensorSpec

__all__ = ["PythonHandlerRuntime", "import_handler_file"]

log = logging.getLogger(__name__)

#: The stages a handler class without ``handle`` must have, called in this order.
STAGES = ("preprocess", "inference", "postprocess")
#: The default signature: one BYTES value in and out per request.
DEFAULT_SIGNATURE = Signature(
    inputs=(TensorSpec("data", Datatype.BYTES, (-1,)),),
    outputs=(TensorSpec("output", Datatype.BYTES, (-1,)),),
)

_COUNTER = itertools.count(1)
_UNSAFE = re.compile(r"[^0-9A-Za-z_]")


class PythonHandlerRuntime(Runtime):
    """A TorchServe-style handler loaded from a ``.py`` file in the version folder."""

    platform = "python"
    default_model_filename = "model.py"
    #: A handler may hold the GIL for long: its calls always go to the worker pool.
    may_run_inline = False

    def __init__(
        self,
        handle: Callable[[list[dict[str, Any]], Any], Any],
        context: Any,
        signature: Signature,
        cleanup: Callable[[], None],
    ) -> None:
        self._handle: Callable[[list[dict[str, Any]], Any], Any] | None = handle
        self._context = context
        self._signature = signature
        self._cleanup = cleanup
        self._lock = threading.Lock()

    @classmethod
    def find_model_file(cls, version_dir: Path, filename: str | None) -> Path | None:
        candidate = version_dir / (filename or cls.default_model_filename)
        return candidate if candidate.suffix == ".py" and candidate.is_file() else None

    @classmethod
    def load(
        cls, model_path: Path, options: RuntimeOptions, context: str = ""
    ) -> PythonHandlerRuntime:
        version_dir = model_path.parent
        manifest = {
            "model": {
                "modelName": version_dir.parent.name,
                "handler": model_path.name,
                "modelVersion": version_dir.name,
            }
        }
        return cls.start(model_path, version_dir, manifest, options, context=context)

    @classmethod
    def start(
        cls,
        handler_file: Path,
        model_dir: Path,
        manifest: dict[str, Any],
        options: RuntimeOptions,
        *,
        context: str = "",
        cleanup: Callable[[], None] | None = None,
        builtin: ModuleType | None = None,
    ) -> Self:
        """Import ``handler_file`` (or use the ``builtin`` handler module) with ``model_dir`` on
        ``sys.path``, build its context from ``manifest`` and initialize it.

        ``cleanup`` runs at unload, or at once if loading fails.
        """
        import_ts_context()  # before the handler imports ``ts`` itself: see there
        added = _add_path(model_dir)
        module_name = ""

        def release() -> None:
            if module_name:
                sys.modules.pop(module_name, None)
            if added:
                _remove_path(model_dir)
            if cleanup is not None:
                cleanup()

        try:
            signature = _signature(options, handler_file.name)
            if builtin is None:
                module = import_handler_file(handler_file)
                module_name = module.__name__
            else:
                module = builtin
            model_name = str(manifest.get("model", {}).get("modelName", model_dir.name))
            batch_size = _batch_size(options)
            handler_context = make_context(model_name, model_dir, manifest, batch_size)
            handle = _initialized_handler(
                module, options.handler, handler_file.name, handler_context
            )
        except BaseException:
            release()
            raise
        log.info("%s: handler %s initialized", context or model_name, handler_file.name)
        return cls(handle, handler_context, signature, release)

    @property
    def signature(self) -> Signature:
        return self._signature

    def infer(
        self, inputs: Mapping[str, np.ndarray[Any, Any]], outputs: Sequence[str]
    ) -> dict[str, np.ndarray[Any, Any]]:
        handle = self._handle
        if handle is None:
            raise RuntimeFailure("the model was unloaded while a request was running")
        batch = _requests(self._signature, inputs)
        with self._lock:
            set_requests(self._context, len(batch))
            try:
                results = handle(batch, self._context)
            except ModelportError:
                raise
            except Exception as exc:
                if _refuses_request(exc):
                    raise InvalidInput(
                        f"the handler refused the request: {getattr(exc, 'message', None) or exc}"
                    ) from exc
                raise RuntimeFailure(
                    f"the handler raised {type(exc).__name__}: {exc}; fix the handler, or the "
                    "request if the handler rejects it"
                ) from exc
        return _outputs(self._signature, results, len(batch), outputs)

    def unload(self) -> None:
        self._handle = None
        cleanup, self._cleanup = self._cleanup, _nothing
        cleanup()


def _refuses_request(exc: Exception) -> bool:
    """Whether a handler's exception blames the request: TorchServe's ``PredictionException``
    (or any exception) with an ``error_code`` from 400 to 499."""
    code = getattr(exc, "error_code", None)
    return isinstance(code, int) and 400 <= code < 500


def import_handler_file(path: Path) -> ModuleType:
    """Import the Python file at ``path`` under a module name no other file gets."""
    name = f"modelport_handler_{next(_COUNTER)}_{_UNSAFE.sub('_', path.stem)}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ModelLoadError(f"{path.name} cannot be imported as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except (Exception, SystemExit) as exc:
        sys.modules.pop(name, None)
        raise ModelLoadError(
            f"importing the handler {path.name} failed: {type(exc).__name__}: {exc}; fix the "
            "file, or install the packages it imports"
        ) from exc
    return module


def _nothing() -> None:
    return None


def _add_path(folder: Path) -> bool:
    entry = str(folder)
    if entry in sys.path:
        return False
    sys.path.insert(0, entry)
    return True


def _remove_path(folder: Path) -> None:
    with contextlib.suppress(ValueError):
        sys.path.remove(str(folder))


def _batch_size(options: RuntimeOptions) -> int:
    return max(1, options.max_batch_size)


def _signature(options: RuntimeOptions, filename: str) -> Signature:
    """``config.yaml``'s declarations; the default ``data`` / ``output`` for a side it omits."""
    if not options.declared_inputs and not options.declared_outputs:
        return DEFAULT_SIGNATURE
    filled = replace(
        options,
        declared_inputs=options.declared_inputs or _overrides(DEFAULT_SIGNATURE.inputs),
        declared_outputs=options.declared_outputs or _overrides(DEFAULT_SIGNATURE.outputs),
    )
    signature = declared_signature(filled, filename)
    for spec in (*signature.inputs, *signature.outputs):
        if not spec.shape:
            raise ModelLoadError(
                f"config.yaml gives {spec.name!r} no dimensions; a handler's tensors hold one "
                "row per request, so give it a first dimension of -1, e.g. shape: [-1]"
            )
    for spec in signature.outputs:
        if spec.datatype is Datatype.BYTES and len(spec.shape) != 1:
            raise ModelLoadError(
                f"config.yaml gives the BYTES output {spec.name!r} the shape {list(spec.shape)}; "
                "a handler's BYTES output holds one value per request, so declare shape: [-1]"
            )
    return signature


def _overrides(specs: tuple[TensorSpec, ...]) -> tuple[TensorOverride, ...]:
    return tuple(
        TensorOverride(name=s.name, datatype=s.datatype, shape=list(s.shape)) for s in specs
    )


# ---- finding and initializing the handler ----------------------------------------------------


def _is_handler_class(member: Any) -> bool:
    return callable(getattr(member, "handle", None)) or all(
        callable(getattr(member, stage, None)) for stage in STAGES
    )


def _initialized_handler(
    module: ModuleType, wanted: str | None, filename: str, context: Any
) -> Callable[[list[dict[str, Any]], Any], Any]:
    """The handler's entry point, after its initialization at load time."""
    entry = _find_entry(module, wanted, filename)
    if inspect.isclass(entry):
        return _start_class(entry, filename, context)
    try:
        entry(None, context)
    except Exception as exc:
        raise ModelLoadError(
            f"{filename}: handle(None, context), the function handler's initialization call "
            f"(as TorchServe makes it), raised {type(exc).__name__}: {exc}; let handle() "
            "return None when data is None"
        ) from exc
    function: Callable[[list[dict[str, Any]], Any], Any] = entry
    return function


def _find_entry(module: ModuleType, wanted: str | None, filename: str) -> Any:
    classes = [
        member
        for _, member in inspect.getmembers(module, inspect.isclass)
        if member.__module__ == module.__name__ and _is_handler_class(member)
    ]
    if wanted:
        entry = getattr(module, wanted, None)
        if entry is None or not (inspect.isclass(entry) or callable(entry)):
            found = ", ".join(c.__name__ for c in classes) or "none"
            raise ModelLoadError(
                f"config.yaml names the handler {wanted!r}, but {filename} defines no class or "
                f"function of that name; its handler classes: {found}"
            )
        if inspect.isclass(entry) and not _is_handler_class(entry):
            raise ModelLoadError(
                f"the class {wanted} in {filename} has no handle() method, nor preprocess(), "
                "inference() and postprocess(); add them to serve it as a handler"
            )
        return entry
    if len(classes) > 1:
        names = ", ".join(c.__name__ for c in classes)
        raise ModelLoadError(
            f"{filename} defines several handler classes ({names}); name the one to serve in "
            f"config.yaml, e.g. handler: {classes[0].__name__}"
        )
    if classes:
        return classes[0]
    function = getattr(module, "handle", None)
    if callable(function):
        return function
    raise ModelLoadError(
        f"{filename} has no handler: define a class with a handle(data, context) method, or "
        "with preprocess(), inference() and postprocess() (for example a subclass of TorchServe's "
        "BaseHandler), or a module-level handle(data, context) function"
    )


def _start_class(
    cls: type[Any], filename: str, context: Any
) -> Callable[[list[dict[str, Any]], Any], Any]:
    try:
        handler = cls()
    except Exception as exc:
        raise ModelLoadError(
            f"{filename}: creating {cls.__name__}() raised {type(exc).__name__}: {exc}; a "
            "handler class must be constructible without arguments"
        ) from exc
    setup = getattr(handler, "initialize", None) or getattr(handler, "load", None)
    if callable(setup):
        try:
            setup(context)
        except Exception as exc:
            raise ModelLoadError(
                f"{filename}: {cls.__name__}.{setup.__name__}(context) raised "
                f"{type(exc).__name__}: {exc}; fix the handler or the files it loads"
            ) from exc
    handle = getattr(handler, "handle", None)
    if callable(handle):
        bound: Callable[[list[dict[str, Any]], Any], Any] = handle
        return bound

    def staged(data: list[dict[str, Any]], ctx: Any) -> Any:
        handler.context = ctx
        return handler.postprocess(handler.inference(handler.preprocess(data)))

    return staged


# ---- requests in, results out ----------------------------------------------------------------


def _requests(
    signature: Signature, inputs: Mapping[str, np.ndarray[Any, Any]]
) -> list[dict[str, Any]]:
    """One dict per row of the input tensors, as TorchServe hands a batch to a handler."""
    arrays = [(spec, inputs[spec.name]) for spec in signature.inputs if spec.name in inputs]
    if not arrays:
        return []
    count = min(len(arr) if arr.ndim else 1 for _, arr in arrays)
    batch: list[dict[str, Any]] = []
    for row in range(count):
        request: dict[str, Any] = {}
        for spec, arr in arrays:
            request[spec.name] = _row(spec, arr, row)
        first = request[arrays[0][0].name]
        request.setdefault("data", first)
        request.setdefault("body", first)
        batch.append(request)
    return batch


def _row(spec: TensorSpec, arr: np.ndarray[Any, Any], row: int) -> Any:
    if not arr.ndim:
        return arr.item() if spec.datatype is Datatype.BYTES else arr
    value = arr[row]
    if spec.datatype is Datatype.BYTES and arr.ndim == 1:
        return bytes(value) if isinstance(value, np.bytes_) else value
    return value


def _outputs(
    signature: Signature, results: Any, count: int, wanted: Sequence[str]
) -> dict[str, np.ndarray[Any, Any]]:
    if not isinstance(results, (list, tuple)):
        raise RuntimeFailure(
            f"the handler returned {type(results).__name__}; it must return a list with one "
            f"result per request ({count} here)"
        )
    if len(results) != count:
        raise RuntimeFailure(
            f"the handler returned {len(results)} results for {count} requests; it must return "
            "one result per request, in order"
        )
    specs = signature.outputs
    if len(specs) == 1:
        columns = {specs[0].name: list(results)}
    else:
        columns = {spec.name: [] for spec in specs}
        for index, result in enumerate(results):
            if not isinstance(result, Mapping):
                names = ", ".join(columns)
                raise RuntimeFailure(
                    f"the handler returned {type(result).__name__} for request {index}; with "
                    f"several outputs each result must be a dict with the keys {names}"
                )
            for name, column in columns.items():
                if name not in result:
                    raise RuntimeFailure(
                        f"the handler's result for request {index} has no key {name!r}; its "
                        f"keys: {', '.join(map(str, result))}"
                    )
                column.append(result[name])
    by_name = {spec.name: spec for spec in specs}
    return {name: _tensor(by_name[name], columns[name]) for name in wanted}


def _tensor(spec: TensorSpec, values: list[Any]) -> np.ndarray[Any, Any]:
    if spec.datatype is Datatype.BYTES:
        out = np.empty(len(values), dtype=object)
        for index, value in enumerate(values):
            out[index] = to_bytes(value, spec.name, index)
        return out
    try:
        arr = np.asarray(values, dtype=spec.datatype.numpy_dtype)
    except (TypeError, ValueError) as exc:
        raise RuntimeFailure(
            f"the handler's results for output {spec.name!r} do not make a {spec.datatype} "
            f"tensor ({exc}); return numbers (or lists of numbers) of one shape per request"
        ) from exc
    fits = arr.ndim == len(spec.shape) and all(
        want in (-1, got) for want, got in zip(spec.shape[1:], arr.shape[1:], strict=True)
    )
    if not fits:
        raise RuntimeFailure(
            f"the handler's results for output {spec.name!r} make the shape {list(arr.shape)}, "
            f"but config.yaml declares {list(spec.shape)} (one row per request); return results "
            "of the declared shape, or correct the declaration"
        )
    return arr


def to_bytes(value: Any, output: str, index: int) -> bytes:
    """A handler's result as a BYTES element: bytes and text as they are, anything else JSON."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, str):
        return value.encode("utf-8")
    try:
        return orjson.dumps(value, default=_plain, option=orjson.OPT_SERIALIZE_NUMPY)
    except TypeError as exc:
        raise RuntimeFailure(
            f"the handler's result for request {index} ({type(value).__name__}) cannot be "
            f"written as JSON for output {output!r}: {exc}; return bytes, str, or JSON-like "
            "values (numbers, lists, dicts, numpy arrays)"
        ) from exc


def _plain(value: Any) -> Any:
    tolist = getattr(value, "tolist", None)
    if callable(tolist):
        return tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")
