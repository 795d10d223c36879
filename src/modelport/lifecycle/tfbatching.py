"""TF Serving's ``--enable_batching`` with ``--batching_parameters_file``, mapped onto
modelport's ``dynamic_batching``.

The text file is TF Serving's ``BatchingParameters`` (scalar fields are wrapper messages, so
``max_batch_size { value: 128 }``). It applies to every model whose ``config.yaml`` does not
configure ``dynamic_batching`` itself:

==================================  ===========================================================
TF Serving field (default)          modelport
==================================  ===========================================================
``max_batch_size`` (1000)           ``max_batch_size``
``batch_timeout_micros`` (0)        ``max_queue_delay_us``
``max_enqueued_batches`` (10)       ``max_queue_size`` = max_enqueued_batches * max_batch_size
``num_batch_threads`` (CPUs)        ``instances``
``allowed_batch_sizes``             ``preferred_batch_sizes`` (the last must be max_batch_size)
``pad_variable_length_inputs``      ``pad_variable_length_inputs``
``enable_large_batch_splitting``    ``split_large_requests``, executing at most
``max_execution_batch_size``        ``max_execution_batch_size`` rows (then ``max_batch_size``)
==================================  ===========================================================
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from google.protobuf import text_format
from pydantic import ValidationError

from modelport._pb.tfserving import session_bundle_config_pb2 as pb
from modelport.model_config import DynamicBatchingConfig, format_validation_error
from modelport.runtimes import available_cpus

__all__ = ["batching_defaults", "parse_batching_parameters"]


def _value(message: Any, field: str, default: int) -> int:
    return int(getattr(message, field).value) if message.HasField(field) else default


def parse_batching_parameters(text: str) -> tuple[DynamicBatchingConfig, int]:
    """The ``dynamic_batching`` section and instance count a TF Serving file asks for."""
    message = pb.BatchingParameters()
    try:
        text_format.Parse(text, message)
    except text_format.ParseError as exc:
        raise ValueError(f"not valid TF Serving batching parameters: {exc}") from exc
    max_batch = _value(message, "max_batch_size", 1000)
    splitting = message.HasField("enable_large_batch_splitting") and bool(
        message.enable_large_batch_splitting.value
    )
    execution = _value(message, "max_execution_batch_size", 1000) if splitting else max_batch
    allowed = list(message.allowed_batch_sizes)
    if allowed and (allowed != sorted(set(allowed)) or allowed[-1] != max_batch):
        raise ValueError(
            "allowed_batch_sizes must increase and end with max_batch_size "
            f"({max_batch}), as TF Serving requires; got {allowed}"
        )
    threads = _value(message, "num_batch_threads", available_cpus())
    try:
        config = DynamicBatchingConfig(
            max_batch_size=execution,
            max_queue_delay_us=_value(message, "batch_timeout_micros", 0),
            preferred_batch_sizes=[size for size in allowed if size <= execution],
            max_queue_size=_value(message, "max_enqueued_batches", 10) * max_batch,
            pad_variable_length_inputs=message.pad_variable_length_inputs,
            split_large_requests=splitting,
        )
    except ValidationError as exc:
        raise ValueError(f"invalid batching parameters: {format_validation_error(exc)}") from exc
    if threads < 1:
        raise ValueError("num_batch_threads must be at least 1")
    return config, threads


def batching_defaults(path: Path) -> dict[str, object]:
    """The ``config.yaml`` defaults a batching parameters file sets, for every model."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"cannot read the batching parameters file {path}: {exc}") from exc
    config, threads = parse_batching_parameters(text)
    return {"dynamic_batching": config, "instances": threads}
