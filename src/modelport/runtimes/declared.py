"""Signatures declared in ``config.yaml``, for model files that do not record their tensors' types.

A TorchScript file keeps no datatypes or shapes for ``forward()``'s arguments and results (Triton's
PyTorch backend has the same gap), so such a model lists its ``inputs:`` and ``outputs:`` in
``config.yaml``, each with a ``datatype`` and a ``shape`` (``-1`` for a dynamic dimension).
"""

from __future__ import annotations

from collections.abc import Sequence

from modelport.errors import ModelLoadError
from modelport.model_config import TensorOverride
from modelport.runtimes.base import RuntimeOptions
from modelport.types import Signature, TensorSpec

__all__ = ["declared_signature", "missing_declarations"]


def declared_signature(
    options: RuntimeOptions, filename: str, argument_names: Sequence[str] = ()
) -> Signature:
    """The signature ``config.yaml`` declares; ``ModelLoadError`` saying what to add if it is short.

    ``argument_names`` (the model's own argument names, when known) only make the example in the
    error message closer to the model.
    """
    missing = missing_declarations(options, filename, argument_names)
    if missing is not None:
        raise ModelLoadError(missing)
    inputs = tuple(_spec(item, "input", filename) for item in options.declared_inputs)
    outputs = tuple(_spec(item, "output", filename) for item in options.declared_outputs)
    for kind, specs in (("input", inputs), ("output", outputs)):
        names = [spec.name for spec in specs]
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise ModelLoadError(
                f"config.yaml declares the {kind} {repeated[0]!r} more than once; "
                f"give each {kind} of {filename} once, in order"
            )
    return Signature(inputs=inputs, outputs=outputs)


def missing_declarations(
    options: RuntimeOptions, filename: str, argument_names: Sequence[str] = ()
) -> str | None:
    """What to add to ``config.yaml`` if it lacks ``inputs:`` or ``outputs:``; None if complete."""
    declared = {"inputs": options.declared_inputs, "outputs": options.declared_outputs}
    absent = [key for key, items in declared.items() if not items]
    if not absent:
        return None
    names = list(argument_names) or ["input_0"]
    examples = {
        "inputs": "inputs: ["
        + ", ".join(f"{{name: {name}, datatype: FP32, shape: [-1, 4]}}" for name in names)
        + "]",
        "outputs": "outputs: [{name: output_0, datatype: FP32, shape: [-1, 2]}]",
    }
    return (
        f"{filename} records no datatypes or shapes for its tensors, so config.yaml must declare "
        f"{' and '.join(absent)}: inputs in the order of forward()'s arguments, outputs in the "
        "order forward() returns them (or by key, for a dict), each with a datatype and a shape "
        "(-1 for a dynamic dimension). For example, with your model's own types and sizes: "
        + " and ".join(examples[key] for key in absent)
    )


def _spec(item: TensorOverride, kind: str, filename: str) -> TensorSpec:
    if item.datatype is None or item.shape is None:
        values = {"datatype": item.datatype, "shape": item.shape}
        lacking = " and ".join(key for key, value in values.items() if value is None)
        raise ModelLoadError(
            f"config.yaml declares {kind} {item.name!r} without a {lacking}; {filename} does not "
            f"record them, so give both, e.g. {{name: {item.name}, datatype: FP32, shape: [-1, 4]}}"
        )
    return TensorSpec(item.name, item.datatype, tuple(item.shape))
