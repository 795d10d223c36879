"""PyTorch sources: a TorchScript archive (``model.pt``) or a class in a Python file.

``file.py:ClassName`` imports the file (running its code, as ``python file.py`` would), builds
``ClassName(**init_args)`` and loads ``--weights`` (a state dict, read with
``torch.load(weights_only=True)``: pickled objects other than tensors are refused). The example
input is ``--sample``, else random data of ``--input-shape``, else the class's ``example_inputs``
(a tensor, a tuple of tensors, or a method returning one).

Export uses ``torch.onnx.export``: the ``torch.export``-based exporter for modules, the
TorchScript exporter for TorchScript archives (which ``torch.export`` cannot trace). Every input
and output gets a dynamic first (batch) dimension. Inputs are named after ``forward``'s
parameters; outputs ``output`` (one tensor), ``output_0``, ``output_1`` ... (a tuple) or after
the keys of a returned dict.
"""

from __future__ import annotations

import importlib.util
import inspect
import json
import sys
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from modelport.convert.engines import require
from modelport.convert.errors import CONVERSION_FAILED, USAGE, ConversionError
from modelport.convert.gate import RESULT_FILENAME, Build, Builder
from modelport.convert.progress import Phases
from modelport.convert.runner import Feeds, Runnable, onnx_opset, path_size
from modelport.convert.samples import (
    generate_feeds,
    load_sample_file,
    match_feeds,
    parse_input_shapes,
    specs_from_shapes,
)

__all__ = ["module_converter", "parse_init_args", "torchscript_converter"]

PURPOSE = "Converting a PyTorch model"


def torchscript_converter(
    path: Path,
    *,
    sample: Path | None,
    input_shapes: Sequence[str],
    seed: int,
    opset: int | None,
) -> Builder:
    """A step converting the TorchScript archive at ``path``."""
    if not path.is_file():
        raise ConversionError(f"{path} is not a file", USAGE)

    def load(torch: Any) -> Any:
        try:
            return torch.jit.load(str(path), map_location="cpu")
        except Exception as exc:  # torch raises RuntimeError and its own C++ error types
            raise ConversionError(
                f"{path} is not a TorchScript archive ({exc}); for a state dict, name the class "
                "that builds the model: modelport convert file.py:ClassName --weights "
                f"{path.name}",
                USAGE,
            ) from exc

    return _converter(
        load,
        label=f"TorchScript {path.name}",
        path=path,
        size=path_size(path),
        scripted=True,
        sample=sample,
        input_shapes=input_shapes,
        seed=seed,
        opset=opset,
    )


def module_converter(
    spec: str,
    *,
    weights: Path | None,
    init_args: Mapping[str, Any],
    sample: Path | None,
    input_shapes: Sequence[str],
    seed: int,
    opset: int | None,
) -> Builder:
    """A step converting ``file.py:ClassName`` built with ``init_args`` and ``weights``."""
    file_text, _, class_name = spec.rpartition(":")
    file = Path(file_text)
    if not file.is_file() or not class_name:
        raise ConversionError(f"{spec} is not FILE.py:ClassName with an existing file", USAGE)
    if weights is not None and not weights.is_file():
        raise ConversionError(f"--weights {weights} is not a file", USAGE)

    def load(torch: Any) -> Any:
        cls = getattr(_import_file(file), class_name, None)
        if cls is None:
            raise ConversionError(f"{file} defines no {class_name}", USAGE)
        try:
            module = cls(**init_args)
        except Exception as exc:
            raise ConversionError(
                f"{class_name}(**{dict(init_args)}) failed: {exc}", USAGE
            ) from exc
        if weights is not None:
            _load_weights(torch, module, weights)
        return module

    size = path_size(weights) if weights is not None else path_size(file)
    label = f"PyTorch {file.name}:{class_name}"
    return _converter(
        load,
        label=label,
        path=weights or file,
        size=size,
        scripted=False,
        sample=sample,
        input_shapes=input_shapes,
        seed=seed,
        opset=opset,
    )


def parse_init_args(text: str | None) -> dict[str, Any]:
    """``--init-args``: a JSON object of keyword arguments for the class."""
    if not text:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConversionError(f"--init-args is not JSON: {exc}", USAGE) from exc
    if not isinstance(value, dict):
        raise ConversionError('--init-args must be a JSON object, such as {"width": 16}', USAGE)
    return value


def _converter(
    load: Callable[[Any], Any],
    *,
    label: str,
    path: Path,
    size: int,
    scripted: bool,
    sample: Path | None,
    input_shapes: Sequence[str],
    seed: int,
    opset: int | None,
) -> Builder:
    def build(folder: Path, phases: Phases) -> Build:
        torch = require("torch", "torch", PURPOSE)
        if not scripted:
            require("onnxscript", "torch", PURPOSE)  # the torch.export-based exporter's
        with phases("Loading the PyTorch model"):
            module = load(torch)
            module.eval()
        names = _input_names(module, scripted)
        feeds, origin = _example(module, names, sample, input_shapes, seed)
        run, output_names = _runner(torch, module, names, feeds)
        target = folder / RESULT_FILENAME
        with phases("Exporting to ONNX"):
            exporter = _export(
                torch,
                module,
                names=names,
                output_names=output_names,
                feeds=feeds,
                target=target,
                opset=opset,
                scripted=scripted,
            )
        details = {"exporter": exporter, "opset": onnx_opset(target)}
        source = Runnable(label, path, size, run)
        notes = _fixed_batch_notes(target)
        return Build(source, target, details=details, notes=notes, feeds=feeds, feeds_origin=origin)

    return build


def _import_file(file: Path) -> ModuleType:
    """Import a Python file as a module, with its folder importable for its own imports."""
    name = f"modelport_user_{file.stem}"
    spec = importlib.util.spec_from_file_location(name, file)
    if spec is None or spec.loader is None:
        raise ConversionError(f"cannot import {file}", USAGE)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    sys.path.insert(0, str(file.parent.resolve()))
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        raise ConversionError(
            f"importing {file} failed: {type(exc).__name__}: {exc}", USAGE
        ) from exc
    finally:
        sys.path.remove(str(file.parent.resolve()))
    return module


def _load_weights(torch: Any, module: Any, weights: Path) -> None:
    try:
        state = torch.load(str(weights), map_location="cpu", weights_only=True)
    except Exception as exc:  # UnpicklingError for anything but tensors and plain containers
        raise ConversionError(
            f"cannot read {weights} as a state dict ({exc}); save the weights with "
            "torch.save(model.state_dict(), path)",
            USAGE,
        ) from exc
    if isinstance(state, Mapping) and isinstance(state.get("state_dict"), Mapping):
        state = state["state_dict"]  # a training checkpoint holding the state dict
    try:
        module.load_state_dict(state, strict=True)
    except Exception as exc:
        raise ConversionError(
            f"the weights in {weights} do not fit the class: {exc}", USAGE
        ) from exc


def _input_names(module: Any, scripted: bool) -> list[str]:
    if scripted:
        return [arg.name for arg in module.forward.schema.arguments[1:]]
    parameters = inspect.signature(module.forward).parameters.values()
    return [
        p.name
        for p in parameters
        if p.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    ]


def _example(
    module: Any, names: list[str], sample: Path | None, input_shapes: Sequence[str], seed: int
) -> tuple[Feeds, str]:
    """The example inputs: ``--sample``, random data of ``--input-shape``, or ``example_inputs``."""
    if sample is not None:
        return match_feeds(load_sample_file(sample), names, str(sample)), str(sample)
    if input_shapes:
        specs = specs_from_shapes(names, parse_input_shapes(input_shapes))
        return generate_feeds(specs, batch_size=1, seed=seed), f"random inputs (seed {seed})"
    example = getattr(module, "example_inputs", None)
    if example is None:
        raise ConversionError(
            "PyTorch models record no input shapes: give --sample FILE.npy|.npz, or "
            "--input-shape (such as 4,16, one per input), or define example_inputs on the class",
            USAGE,
        )
    value = example() if callable(example) else example
    if isinstance(value, Mapping):
        return match_feeds({k: _numpy(v) for k, v in value.items()}, names, "example_inputs"), (
            "example_inputs"
        )
    arrays = list(value) if isinstance(value, tuple | list) else [value]
    return match_feeds(
        {f"arr_{i}": _numpy(v) for i, v in enumerate(arrays)}, names, "example_inputs"
    ), "example_inputs"


def _numpy(value: Any) -> np.ndarray[Any, Any]:
    if hasattr(value, "detach"):
        return np.asarray(value.detach().cpu().numpy())
    return np.asarray(value)


def _runner(
    torch: Any, module: Any, names: list[str], feeds: Feeds
) -> tuple[Callable[[Feeds], Feeds], list[str]]:
    """The module as a function of named arrays, and its output names (from one call)."""

    def call(batch: Feeds) -> list[tuple[str, np.ndarray[Any, Any]]]:
        tensors = [torch.from_numpy(np.ascontiguousarray(batch[name])) for name in names]
        with torch.inference_mode():
            return _flatten(module(*tensors))

    try:
        output_names = [name for name, _ in call(feeds)]
    except ConversionError:
        raise
    except Exception as exc:
        raise ConversionError(
            f"the model failed on the example inputs: {type(exc).__name__}: {exc}", USAGE
        ) from exc

    def run(batch: Feeds) -> Feeds:
        return dict(call(batch))

    return run, output_names


def _flatten(value: Any, prefix: str = "output") -> list[tuple[str, np.ndarray[Any, Any]]]:
    if hasattr(value, "detach"):
        return [(prefix, value.detach().cpu().numpy())]
    if isinstance(value, Mapping):
        return [item for key, v in value.items() for item in _flatten(v, str(key))]
    if isinstance(value, tuple | list):
        return [item for i, v in enumerate(value) for item in _flatten(v, f"{prefix}_{i}")]
    raise ConversionError(
        f"the model returned a {type(value).__name__}; return tensors, or tuples or dicts of "
        "tensors",
        USAGE,
    )


def _export(
    torch: Any,
    module: Any,
    *,
    names: list[str],
    output_names: list[str],
    feeds: Feeds,
    target: Path,
    opset: int | None,
    scripted: bool,
) -> str:
    """Export with a dynamic batch dimension; return which exporter was used."""
    args = tuple(torch.from_numpy(np.ascontiguousarray(_two_rows(feeds[n]))) for n in names)
    try:
        if scripted:
            axes = {name: {0: "batch"} for name in [*names, *output_names]}
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the TorchScript exporter is deprecated
                torch.onnx.export(
                    module,
                    args,
                    str(target),
                    dynamo=False,
                    input_names=names,
                    output_names=output_names,
                    dynamic_axes=axes,
                    opset_version=opset,
                )
            return "torch.onnx.export (TorchScript)"
        batch = torch.export.Dim("batch")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            program = torch.onnx.export(
                module,
                args,
                dynamo=True,
                input_names=names,
                output_names=output_names,
                dynamic_shapes=tuple({0: batch} for _ in names),
                opset_version=opset,
            )
            program.save(str(target))
    except ConversionError:
        raise
    except Exception as exc:
        raise ConversionError(
            f"torch.onnx.export failed: {type(exc).__name__}: {_first_lines(exc)}",
            CONVERSION_FAILED,
        ) from exc
    return "torch.onnx.export (torch.export)"


def _two_rows(array: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """A batch of one is repeated to two: torch.export treats a size of 1 as a constant."""
    if array.ndim and array.shape[0] == 1:
        return np.concatenate([array, array])
    return array


def _first_lines(exc: Exception, count: int = 12) -> str:
    return "\n".join(str(exc).strip().splitlines()[:count])


def _fixed_batch_notes(path: Path) -> list[str]:
    """A note for each input or output whose first dimension the exporter left fixed."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    notes = []
    for kind, values in (("input", graph.input), ("output", graph.output)):
        for value in values:
            dims = value.type.tensor_type.shape.dim
            if dims and not dims[0].dim_param:
                notes.append(
                    f"{kind} {value.name} has a fixed first dimension ({dims[0].dim_value})"
                )
    return notes
