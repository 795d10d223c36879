"""PyTorch engines: TorchScript ``model.pt`` and ``torch.export`` ``model.pt2``.

- **TorchScript** (platform ``pytorch_libtorch``, Triton's name): ``torch.jit.load``. The file
  records no datatypes or shapes, so ``config.yaml`` must declare ``inputs:`` and ``outputs:``
  (see ``runtimes.declared``).
- **torch.export** (platform ``pytorch_export``): ``torch.export.load``, run through
  ``.module()``. The exported program gives the signature: inputs are named after ``forward()``'s
  arguments, dynamic dimensions are -1, and outputs are named by their dict keys, or
  ``output_0``, ``output_1`` ... (``config.yaml``'s ``outputs:`` may name those, in order).

Inputs go to ``forward()`` positionally, in signature order. What it returns maps onto the outputs:
a tensor is the one output, a tuple or list of tensors gives the outputs in order, and a dict of
tensors gives them by key. Inference runs under ``torch.inference_mode()``. ``torch.from_numpy``
wraps the request's arrays without a copy, except read-only ones (decoded straight from request
bytes), which are copied because a model may write to its inputs in place.

``runtime.intra_op_threads`` calls ``torch.set_num_threads``, which is process-wide: the PyTorch
model loaded last sets it for every PyTorch model in the server. A ``CUDAExecutionProvider`` in
``runtime.execution_providers`` runs the model on ``cuda:<device_id>`` when PyTorch sees that GPU,
and on the CPU, with one warning, when it does not.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from modelport.errors import InvalidInput, ModelLoadError, ModelportError, RuntimeFailure
from modelport.runtimes.base import ExecutionProvider, Runtime, RuntimeOptions
from modelport.runtimes.declared import declared_signature
from modelport.types import Datatype, Signature, TensorSpec

__all__ = ["TorchExportRuntime", "TorchScriptRuntime"]

log = logging.getLogger(__name__)

CUDA_PROVIDER = "CUDAExecutionProvider"
CPU_PROVIDER = "CPUExecutionProvider"

_BF16 = Datatype.BF16.numpy_dtype

#: torch.export.load keeps its deserializer in a global, so two loads at once fail
#: ("_CURRENT_DESERIALIZER is already set"); PyTorch files are read one at a time.
_READ_LOCK = threading.Lock()

#: Words in a torch error that point at the request's values rather than at the model.
_INPUT_HINTS = (
    "shape",
    "size",
    "dimension",
    "out of range",
    "out of bounds",
    "expected input",
    "must match",
    "guard failed",  # torch.export's check of the exported shapes
)


class _TorchRuntime(Runtime):
    """What both PyTorch engines share: tensors in and out, the output mapping, errors."""

    #: The model file extension this engine claims.
    suffix: ClassVar[str]

    def __init__(self, torch: Any, module: Any, signature: Signature, device: str) -> None:
        self._torch = torch
        self._module: Callable[..., Any] | None = module
        self._signature = signature
        self._input_names = signature.input_names
        self._output_names = signature.output_names
        self._output_dtypes = {spec.name: spec.datatype.numpy_dtype for spec in signature.outputs}
        #: The torch device the model runs on: ``cpu`` or ``cuda:N``.
        self.device = device

    @classmethod
    def find_model_file(cls, version_dir: Path, filename: str | None) -> Path | None:
        if filename:
            candidate = version_dir / filename
            return candidate if candidate.suffix == cls.suffix and candidate.is_file() else None
        default = version_dir / cls.default_model_filename
        if default.is_file():
            return default
        found = sorted(p for p in version_dir.glob(f"*{cls.suffix}") if p.is_file())
        return found[0] if len(found) == 1 else None

    @property
    def signature(self) -> Signature:
        return self._signature

    def infer(
        self, inputs: Mapping[str, np.ndarray[Any, Any]], outputs: Sequence[str]
    ) -> dict[str, np.ndarray[Any, Any]]:
        module = self._module
        if module is None:
            raise RuntimeFailure("the model was unloaded while a request was running")
        try:
            with self._torch.inference_mode():
                args = [self._tensor(name, inputs) for name in self._input_names]
                produced = _by_name(module(*args), self._output_names)
                return {name: self._array(name, produced[name]) for name in outputs}
        except ModelportError:
            raise
        except Exception as exc:
            raise _translate(exc) from exc

    def unload(self) -> None:
        self._module = None
        if self.device.startswith("cuda"):
            self._torch.cuda.empty_cache()

    def _tensor(self, name: str, inputs: Mapping[str, np.ndarray[Any, Any]]) -> Any:
        arr = inputs.get(name)
        if arr is None:
            raise InvalidInput(f"missing input {name!r}; the model takes {list(self._input_names)}")
        if not arr.flags.writeable or not arr.flags.c_contiguous or not arr.dtype.isnative:
            # torch tensors cannot be read-only, and from_numpy refuses negative strides.
            arr = np.array(arr, dtype=arr.dtype.newbyteorder("="), order="C")
        if arr.dtype == _BF16:
            tensor = self._torch.from_numpy(arr.view(np.int16)).view(self._torch.bfloat16)
        else:
            tensor = self._torch.from_numpy(arr)
        return tensor if self.device == "cpu" else tensor.to(self.device)

    def _array(self, name: str, value: Any) -> np.ndarray[Any, Any]:
        torch = self._torch
        if not isinstance(value, torch.Tensor):
            raise RuntimeFailure(
                f"the model returned {type(value).__name__} for output {name!r}, not a tensor; "
                "forward() must return tensors"
            )
        tensor = value.detach()
        if tensor.device.type != "cpu":
            tensor = tensor.cpu()
        if tensor.dtype == torch.bfloat16:
            arr: np.ndarray[Any, Any] = tensor.view(torch.int16).numpy().view(_BF16)
        else:
            arr = tensor.resolve_conj().resolve_neg().numpy()
        expected = self._output_dtypes[name]
        if arr.dtype != expected:
            raise RuntimeFailure(
                f"the model returned output {name!r} as {_describe_dtype(arr.dtype)}, but its "
                f"signature says {Datatype.from_numpy(expected)}; correct the output's datatype "
                "in config.yaml"
            )
        return arr


class TorchScriptRuntime(_TorchRuntime):
    """A TorchScript module (``torch.jit.save``) with its signature declared in ``config.yaml``."""

    platform = "pytorch_libtorch"
    default_model_filename = "model.pt"
    suffix = ".pt"

    @classmethod
    def load(
        cls, model_path: Path, options: RuntimeOptions, context: str = ""
    ) -> TorchScriptRuntime:
        torch = _import_torch(model_path.name)
        device = _choose_device(torch, options.execution_providers, context)
        _set_threads(torch, options.intra_op_threads, context)
        try:
            with _READ_LOCK:
                module = torch.jit.load(str(model_path), map_location=device)
        except Exception as exc:
            raise ModelLoadError(
                f"torch.jit.load could not read {model_path.name}: {_last_line(exc)}; it must be "
                "a TorchScript file written by torch.jit.save (a whole module written by "
                "torch.save is a pickle, which modelport does not load)"
            ) from exc
        module.eval()
        arguments = _forward_arguments(module)
        signature = declared_signature(options, model_path.name, [a.name for a in arguments])
        _check_argument_count(arguments, signature, model_path.name)
        _refuse_bytes(signature, model_path.name)
        return cls(torch, module, signature, device)


class TorchExportRuntime(_TorchRuntime):
    """An ``ExportedProgram`` (``torch.export.save``), whose file records its own signature."""

    platform = "pytorch_export"
    default_model_filename = "model.pt2"
    suffix = ".pt2"

    @classmethod
    def load(
        cls, model_path: Path, options: RuntimeOptions, context: str = ""
    ) -> TorchExportRuntime:
        torch = _import_torch(model_path.name)
        device = _choose_device(torch, options.execution_providers, context)
        _set_threads(torch, options.intra_op_threads, context)
        try:
            with _READ_LOCK:
                program = torch.export.load(str(model_path))
        except Exception as exc:
            raise ModelLoadError(
                f"torch.export.load could not read {model_path.name}: {_last_line(exc)}; it must "
                "be an exported program written by torch.export.save"
            ) from exc
        signature = _exported_signature(program, options, model_path.name)
        if device != "cpu":
            from torch.export.passes import move_to_device_pass

            program = move_to_device_pass(program, device)
        return cls(torch, program.module(), signature, device)


# ---- loading --------------------------------------------------------------------------------


def _import_torch(filename: str) -> Any:
    try:
        import torch
    except ImportError as exc:
        raise ModelLoadError(f"{filename} needs PyTorch: pip install 'modelport[torch]'") from exc
    return torch


def _choose_device(torch: Any, providers: Sequence[ExecutionProvider], context: str) -> str:
    """``cuda:N`` for the first CUDA provider PyTorch can use, else ``cpu``.

    Providers are read in order, as onnxruntime would: ``CPUExecutionProvider`` ends the search,
    and names PyTorch has no counterpart for are skipped with a warning.
    """
    wanted_cuda = False
    for provider in providers:
        if provider.name == CPU_PROVIDER:
            break
        if provider.name != CUDA_PROVIDER:
            log.warning(
                "%s: execution provider %s has no PyTorch counterpart and is ignored "
                "(PyTorch models use %s or %s)",
                context or "model",
                provider.name,
                CUDA_PROVIDER,
                CPU_PROVIDER,
            )
            continue
        wanted_cuda = True
        index = _device_id(provider)
        if torch.cuda.is_available() and index < torch.cuda.device_count():
            return f"cuda:{index}"
    if wanted_cuda:
        log.warning(
            "%s: %s is configured but PyTorch %s sees no such CUDA device "
            "(torch.cuda.is_available() is %s); running on CPU",
            context or "model",
            CUDA_PROVIDER,
            torch.__version__,
            torch.cuda.is_available(),
        )
    return "cpu"


def _device_id(provider: ExecutionProvider) -> int:
    value = provider.options.get("device_id", 0)
    try:
        index = int(str(value))
    except ValueError:
        index = -1
    if index < 0:
        raise ModelLoadError(
            f"{provider.name} option device_id is {value!r}; give a GPU number such as 0"
        )
    return index


def _set_threads(torch: Any, threads: int, context: str) -> None:
    if threads <= 0 or torch.get_num_threads() == threads:
        return
    torch.set_num_threads(threads)
    log.info(
        "%s: torch.set_num_threads(%d); PyTorch's thread count is process-wide, so it applies "
        "to every PyTorch model in this server",
        context or "model",
        threads,
    )


def _forward_arguments(module: Any) -> list[Any]:
    """``forward()``'s arguments after ``self``, from the TorchScript schema."""
    try:
        return list(module.forward.schema.arguments)[1:]
    except (AttributeError, RuntimeError):  # a module without forward(); the call will say so
        return []


def _check_argument_count(arguments: Sequence[Any], signature: Signature, filename: str) -> None:
    if not arguments:
        return
    required = [a for a in arguments if not a.has_default_value()]
    declared = len(signature.inputs)
    if len(required) <= declared <= len(arguments):
        return
    names = ", ".join(a.name for a in arguments)
    raise ModelLoadError(
        f"config.yaml declares {declared} inputs, but forward() of {filename} takes "
        f"{len(arguments)} ({names}); declare one input per argument, in that order"
    )


def _refuse_bytes(signature: Signature, filename: str) -> None:
    for spec in (*signature.inputs, *signature.outputs):
        if spec.datatype is Datatype.BYTES:
            raise ModelLoadError(
                f"config.yaml declares {spec.name!r} as BYTES, but {filename} takes and returns "
                "numeric tensors only; tokenize or decode text before it reaches the model"
            )


def _exported_signature(program: Any, options: RuntimeOptions, filename: str) -> Signature:
    graph_signature = program.graph_signature
    nodes = {node.name: node for node in program.graph.nodes}
    in_spec, out_spec = program.call_spec.in_spec, program.call_spec.out_spec
    if not _flat_positional(in_spec):
        raise ModelLoadError(
            f"{filename} takes keyword or nested arguments; export a forward() whose "
            "arguments are tensors passed by position"
        )
    inputs = tuple(
        _exported_spec(name, nodes[name], "input", filename) for name in graph_signature.user_inputs
    )
    values = [nodes[name] for name in graph_signature.user_outputs]
    names = _exported_output_names(out_spec, len(values), options, filename)
    outputs = tuple(
        _exported_spec(name, node, "output", filename)
        for name, node in zip(names, values, strict=True)
    )
    return Signature(inputs=inputs, outputs=outputs)


def _flat_positional(in_spec: Any) -> bool:
    if in_spec is None or in_spec.num_children != 2:
        return False
    args, kwargs = in_spec.children()
    return kwargs.num_children == 0 and all(child.is_leaf() for child in args.children())


def _exported_output_names(
    out_spec: Any, count: int, options: RuntimeOptions, filename: str
) -> list[str]:
    """Dict keys, or ``output_N``; ``config.yaml``'s ``outputs:`` name positional outputs."""
    leaves = out_spec.is_leaf() or all(child.is_leaf() for child in out_spec.children())
    if not leaves:
        raise ModelLoadError(
            f"{filename} returns nested containers; export a forward() that returns a tensor, "
            "a tuple of tensors or a dict of tensors"
        )
    if not out_spec.is_leaf() and out_spec.type is dict:
        return [str(key) for key in out_spec.context]
    declared = [item.name for item in options.declared_outputs]
    if not declared:
        return [f"output_{i}" for i in range(count)]
    if len(declared) != count:
        raise ModelLoadError(
            f"config.yaml declares {len(declared)} outputs, but {filename} returns {count}; "
            "list every output, in the order forward() returns them"
        )
    return declared


def _exported_spec(name: str, node: Any, kind: str, filename: str) -> TensorSpec:
    value = node.meta.get("val")
    dtype = getattr(value, "dtype", None)
    datatype = Datatype.from_dtype_name(str(dtype).removeprefix("torch."))
    if datatype is None:
        what = f"a {str(dtype).removeprefix('torch.')} tensor" if dtype else type(value).__name__
        raise ModelLoadError(
            f"{kind} {name!r} of {filename} is {what}, which modelport cannot serve; export the "
            "model with boolean, integer or floating-point tensors"
        )
    shape = tuple(d if isinstance(d, int) else -1 for d in value.shape)
    return TensorSpec(name, datatype, shape)


# ---- inference ------------------------------------------------------------------------------


def _by_name(result: Any, names: Sequence[str]) -> Mapping[str, Any]:
    """What forward() returned, by output name (see the module docstring)."""
    if isinstance(result, Mapping):
        missing = [name for name in names if name not in result]
        if missing:
            raise RuntimeFailure(
                f"the model returned a dict with keys {sorted(map(str, result))}, which lacks "
                f"the outputs {missing}; name the outputs in config.yaml after its keys"
            )
        return result
    values = list(result) if isinstance(result, tuple | list) else [result]
    if len(values) != len(names):
        raise RuntimeFailure(
            f"the model returned {len(values)} values, but its signature has {len(names)} "
            f"outputs ({', '.join(names)}); declare one output per returned tensor, in order"
        )
    return dict(zip(names, values, strict=True))


def _translate(exc: Exception) -> ModelportError:
    """Torch errors about the request's values become 400s; anything else is a failure."""
    text = _last_line(exc)
    out_of_memory = isinstance(exc, MemoryError) or "OutOfMemory" in type(exc).__name__
    about_input = isinstance(exc, IndexError) or (
        isinstance(exc, RuntimeError | ValueError | TypeError | AssertionError)
        and any(hint in text.lower() for hint in _INPUT_HINTS)
    )
    if about_input and not out_of_memory:
        return InvalidInput(f"the model rejected the input: {text}")
    log.error("PyTorch failed while running a request: %s", exc)
    return RuntimeFailure("the model failed while running this request; see the server log")


def _last_line(exc: BaseException) -> str:
    """The last line of a torch message: TorchScript prepends its interpreter's traceback."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[-1] if lines else type(exc).__name__


def _describe_dtype(dtype: np.dtype[Any]) -> str:
    try:
        return str(Datatype.from_numpy(dtype))
    except ValueError:
        return str(dtype)
