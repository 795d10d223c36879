"""Turning a version folder into a loaded, checked and warmed-up runtime (runs in a worker thread).

Loading fails with ``ModelLoadError`` when no engine recognises the files, the engine cannot load
them, ``config.yaml`` contradicts the model's own signature, or a warm-up inference fails. The
error says which, and what to change.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from modelport.core.batcher import batching_problem
from modelport.errors import ModelLoadError, ModelportError
from modelport.lifecycle.repository import VersionFolder
from modelport.model_config import ModelConfig, TensorOverride
from modelport.runtimes import (
    ExecutionProvider,
    Runtime,
    RuntimeOptions,
    available_cpus,
    known_model_files,
    select_runtime,
)
from modelport.runtimes.mar_archive import ArchiveLimits
from modelport.types import Datatype, Signature, TensorSpec

__all__ = ["LoadedVersion", "apply_overrides", "load_version", "runtime_options", "warm_up"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class LoadedVersion:
    """A runtime ready for traffic, with the signature requests are checked against."""

    runtime: Runtime
    signature: Signature


def load_version(folder: VersionFolder, config: ModelConfig, context: str) -> LoadedVersion:
    """Load, check and warm up one version folder. Blocking; call it from a worker thread."""
    started = time.monotonic()
    selected = select_runtime(folder.path, config.default_model_filename)
    if selected is None:
        wanted = config.default_model_filename or " or ".join(known_model_files())
        raise ModelLoadError(
            f"no model file in version folder {folder.path.name}: expected {wanted}"
        )
    runtime_cls, model_path = selected
    runtime = runtime_cls.load(model_path, runtime_options(config), context)
    try:
        signature = apply_overrides(runtime.signature, config)
        _check_task_outputs(signature, config)
        _check_batching(signature, config)
        warm_up(runtime, signature, config)
    except BaseException:
        runtime.unload()
        raise
    log.info(
        "%s: loaded %s with %s in %.2f s",
        context,
        model_path.name,
        runtime_cls.__name__,
        time.monotonic() - started,
    )
    return LoadedVersion(runtime, signature)


def runtime_options(config: ModelConfig) -> RuntimeOptions:
    """Engine options from the ``runtime:`` section of ``config.yaml``.

    Left at 0, the intra-op threads of a version with several ``instances`` share out the CPUs,
    so that instances times threads fits the machine.
    """
    section = config.runtime
    threads = section.intra_op_threads
    if threads == 0 and (config.instances or 1) > 1:
        threads = max(1, available_cpus() // (config.instances or 1))
    return RuntimeOptions(
        intra_op_threads=threads,
        inter_op_threads=section.inter_op_threads,
        execution_providers=tuple(
            ExecutionProvider(p.name, dict(p.options)) for p in section.execution_providers
        ),
        graph_optimization_level=section.graph_optimization_level,
        allow_unsafe_pickle=config.allow_unsafe_pickle,
        declared_inputs=tuple(config.inputs),
        declared_outputs=tuple(config.outputs),
        handler=config.handler,
        max_batch_size=(
            config.dynamic_batching.max_batch_size
            if config.dynamic_batching is not None
            else config.max_batch_size
        ),
        archive_limits=ArchiveLimits(**config.archive.model_dump()),
    )


def apply_overrides(signature: Signature, config: ModelConfig) -> Signature:
    """The model's signature with ``config.yaml``'s ``inputs``/``outputs`` declarations applied."""
    return Signature(
        inputs=_override(signature.inputs, config.inputs, "input"),
        outputs=_override(signature.outputs, config.outputs, "output"),
    )


def _override(
    specs: tuple[TensorSpec, ...], overrides: list[TensorOverride], kind: str
) -> tuple[TensorSpec, ...]:
    by_name = {spec.name: spec for spec in specs}
    for item in overrides:
        spec = by_name.get(item.name)
        if spec is None:
            names = ", ".join(by_name) or "none"
            raise ModelLoadError(
                f"config.yaml declares {kind} {item.name!r}, but the model's {kind}s are: {names}"
            )
        if item.datatype is not None and item.datatype is not spec.datatype:
            raise ModelLoadError(
                f"config.yaml says {kind} {item.name!r} is {item.datatype}, but the model "
                f"declares {spec.datatype}; remove the datatype or re-export the model"
            )
        if item.shape is not None:
            spec = replace(spec, shape=_merge_shape(spec, tuple(item.shape), kind))
        by_name[item.name] = spec
    return tuple(by_name[spec.name] for spec in specs)


def _merge_shape(spec: TensorSpec, declared: tuple[int, ...], kind: str) -> tuple[int, ...]:
    if spec.shape and len(declared) != len(spec.shape):
        raise ModelLoadError(
            f"config.yaml gives {kind} {spec.name!r} the shape {list(declared)}, but the model "
            f"declares {len(spec.shape)} dimensions {list(spec.shape)}"
        )
    for model_dim, config_dim in zip(spec.shape, declared, strict=False):
        if model_dim not in (-1, config_dim):
            raise ModelLoadError(
                f"config.yaml gives {kind} {spec.name!r} the shape {list(declared)}, which "
                f"contradicts the model's fixed shape {list(spec.shape)}"
            )
    return declared


def _check_batching(signature: Signature, config: ModelConfig) -> None:
    # Batching asked for by the server's flags skips models it cannot batch (see scheduling).
    if config.dynamic_batching is not None and not config.inherited("dynamic_batching"):
        problem = batching_problem(signature)
        if problem is not None:
            raise ModelLoadError(problem)


def _check_task_outputs(signature: Signature, config: ModelConfig) -> None:
    named = {
        "classification.scores": config.classification.scores,
        "classification.classes": config.classification.classes,
        "regression.output": config.regression.output,
    }
    for key, name in named.items():
        if name is not None and signature.output(name) is None:
            outputs = ", ".join(signature.output_names)
            raise ModelLoadError(
                f"config.yaml {key} names output {name!r}, but the model's outputs are: {outputs}"
            )


def warm_up(runtime: Runtime, signature: Signature, config: ModelConfig) -> None:
    """Run ``warmup.iterations`` inferences on zero-filled inputs before serving."""
    if not config.warmup.enabled:
        return
    inputs = {
        spec.name: _warmup_tensor(spec, config.warmup.batch_size) for spec in signature.inputs
    }
    for _ in range(config.warmup.iterations):
        try:
            runtime.infer(inputs, signature.output_names)
        except (ModelportError, Exception) as exc:
            detail = exc.message if isinstance(exc, ModelportError) else str(exc)
            raise ModelLoadError(
                f"warm-up inference failed: {detail}; if the model needs particular inputs, "
                "set warmup: {enabled: false} in config.yaml"
            ) from exc


def _warmup_tensor(spec: TensorSpec, batch_size: int) -> np.ndarray[Any, Any]:
    shape = tuple((batch_size if i == 0 else 1) if d == -1 else d for i, d in enumerate(spec.shape))
    if spec.datatype is Datatype.BYTES:
        arr = np.empty(shape, dtype=object)
        arr.fill(b"")
        return arr
    return np.zeros(shape, dtype=spec.datatype.numpy_dtype)
