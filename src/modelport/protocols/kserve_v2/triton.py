"""Triton's extensions of the V2 protocol, as JSON documents shared by REST and gRPC.

- ``model_configuration``: a model's configuration in the shape of Triton's ``ModelConfig``.
  A model whose inputs and outputs all have a dynamic first dimension is reported batched:
  ``max_batch_size`` above 0 and ``dims`` without the batch dimension, while metadata shapes
  keep the leading -1 (perf_analyzer relies on both conventions at once). Without a configured
  limit, ``max_batch_size`` is 2147483647.
- ``statistics``: per-version counters (see ``core.stats``).
- ``model_repository``: the index of models and their states (the load and unload calls live
  in the adapters).
"""

from __future__ import annotations

from typing import Any

from modelport.core.dataplane import ServedVersion
from modelport.model_config import VersionPolicy
from modelport.types import IndexEntry, TensorSpec

__all__ = ["EXTENSIONS", "index_entries", "model_config", "model_statistics"]

#: Only what modelport implements: clients decide what to call by this list.
EXTENSIONS = ("binary_tensor_data", "model_repository", "model_configuration", "statistics")

#: What ``max_batch_size`` reports for a batched model with no limit configured.
NO_LIMIT = 2**31 - 1

_BACKENDS = {
    "onnxruntime_onnx": "onnxruntime",
    "pytorch_libtorch": "pytorch",
    "pytorch_export": "pytorch",
    "tensorflow_savedmodel": "tensorflow",
}


def _batched(target: ServedVersion) -> bool:
    specs = (*target.signature.inputs, *target.signature.outputs)
    return all(spec.shape and spec.shape[0] == -1 for spec in specs)


def max_batch_size(target: ServedVersion) -> int:
    """Triton's ``max_batch_size``: 0 for a model without a batch dimension."""
    if not _batched(target):
        return 0
    config = target.config
    if config.dynamic_batching is not None:
        return config.dynamic_batching.max_batch_size
    return config.max_batch_size or NO_LIMIT


def _dims(spec: TensorSpec, batched: bool) -> list[int]:
    return list(spec.shape[1:] if batched else spec.shape)


def _policy(policy: VersionPolicy) -> dict[str, Any]:
    if policy.kind == "all":
        return {"all": {}}
    if policy.kind == "specific":
        return {"specific": {"versions": list(policy.versions)}}
    return {"latest": {"num_versions": policy.num_versions}}


def model_config(target: ServedVersion) -> dict[str, Any]:
    """The model's configuration as Triton's JSON (snake_case field names)."""
    batched = _batched(target)
    config = target.config
    document: dict[str, Any] = {
        "name": target.model,
        "platform": target.platform,
        "backend": _BACKENDS.get(target.platform, target.platform),
        "runtime": "",
        "version_policy": _policy(config.version_policy),
        "max_batch_size": max_batch_size(target),
        "input": [
            {
                "name": spec.name,
                "data_type": f"TYPE_{'STRING' if spec.datatype == 'BYTES' else spec.datatype}",
                "format": "FORMAT_NONE",
                "dims": _dims(spec, batched),
                "is_shape_tensor": False,
                "allow_ragged_batch": False,
                "optional": False,
            }
            for spec in target.signature.inputs
        ],
        "output": [
            {
                "name": spec.name,
                "data_type": f"TYPE_{'STRING' if spec.datatype == 'BYTES' else spec.datatype}",
                "dims": _dims(spec, batched),
                "label_filename": "",
                "is_shape_tensor": False,
            }
            for spec in target.signature.outputs
        ],
        "instance_group": [
            {"name": target.model, "kind": "KIND_CPU", "count": config.instances or 1, "gpus": []}
        ],
        "default_model_filename": config.default_model_filename or "model.onnx",
        "parameters": {},
        "model_transaction_policy": {"decoupled": False},
        "response_cache": {"enable": False},
    }
    batching = config.dynamic_batching
    if batching is not None:
        document["dynamic_batching"] = {
            "preferred_batch_size": list(batching.preferred_batch_sizes),
            "max_queue_delay_microseconds": batching.max_queue_delay_us,
            "preserve_ordering": False,
            "priority_levels": batching.priority_levels if batching.priority_levels > 1 else 0,
            "default_priority_level": batching.default_priority_level or 0,
        }
    return document


def model_statistics(targets: list[ServedVersion]) -> dict[str, Any]:
    """Triton's statistics document for these versions."""
    return {"model_stats": [t.stats.as_dict(t.model, t.version) for t in targets]}


def index_entries(entries: list[IndexEntry], ready_only: bool) -> list[dict[str, str]]:
    """Triton's repository index rows."""
    rows = []
    for entry in entries:
        if ready_only and entry.state != "READY":
            continue
        row = {"name": entry.name, "state": entry.state, "reason": entry.reason}
        if entry.version is not None:
            row["version"] = str(entry.version)
        rows.append(row)
    return rows
