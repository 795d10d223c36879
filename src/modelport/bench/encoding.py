"""Request bodies for each wire protocol, encoded once before the load, and answer checks.

Each protocol is a function in ``ENCODERS`` that turns the model's metadata and the input tensors
into a ``PreparedRequest`` (the bytes sent, unchanged, for every request) and a ``ResponseCheck``
(what ``--check`` looks for in an answer). The three HTTP protocols share ``client.py``; a gRPC
protocol would add its encoder here and its own connection class beside ``client.py``.
"""

from __future__ import annotations

import json
import struct
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import numpy as np
import orjson

from modelport.bench.server import ModelSpec, model_path
from modelport.bench.settings import Target

__all__ = ["ENCODERS", "Encoded", "PreparedRequest", "ResponseCheck", "encode_request"]

Inputs = dict[str, np.ndarray[Any, Any]]
_JSON = "application/json"


@dataclass(frozen=True)
class PreparedRequest:
    """One request, ready to send: method, path, extra headers and body."""

    method: str
    path: str
    headers: tuple[tuple[str, str], ...]
    body: bytes

    def wire_bytes(self, target: Target) -> bytes:
        """The whole HTTP/1.1 request (request line, headers, body) as sent on every request."""
        lines = [
            f"{self.method} {self.path} HTTP/1.1",
            f"Host: {target.host_header}",
            *(f"{name}: {value}" for name, value in self.headers),
            f"Content-Length: {len(self.body)}",
            "",
            "",
        ]
        return "\r\n".join(lines).encode("latin-1") + self.body


@dataclass(frozen=True)
class ResponseCheck:
    """What a good answer holds; a plain value so worker processes can take it along.

    ``kind`` is ``v2-json``, ``v2-binary``, ``tf-rows`` or ``tf-columns``; ``outputs`` the output
    names expected (empty: any); ``rows`` the number of predictions a row-format answer holds.
    """

    kind: str
    outputs: tuple[str, ...] = ()
    rows: int = 0

    def __call__(self, body: bytes) -> str | None:
        """``None`` if ``body`` is a good answer, else what is wrong with it."""
        try:
            return self._problem(body)
        except (ValueError, KeyError, TypeError, IndexError, AttributeError) as exc:
            return f"unreadable answer ({exc!r}): {body[:200]!r}"

    def _problem(self, body: bytes) -> str | None:
        if self.kind == "v2-binary":
            text = body.decode("latin-1")  # one character per byte, so indexes are byte offsets
            header, end = json.JSONDecoder().raw_decode(text)
            sizes = sum(
                int(o.get("parameters", {}).get("binary_data_size", 0)) for o in header["outputs"]
            )
            if end + sizes != len(body):
                return f"the JSON header announces {sizes} bytes of outputs, {len(body) - end} came"
            return self._names(header)
        answer = orjson.loads(body)
        if self.kind == "tf-rows":
            predictions = answer["predictions"]
            if len(predictions) != self.rows:
                return f"{len(predictions)} predictions for {self.rows} instances"
            return None
        if self.kind == "tf-columns":
            return None if "outputs" in answer else "the answer has no outputs"
        return self._names(answer)

    def _names(self, answer: dict[str, Any]) -> str | None:
        names = tuple(o["name"] for o in answer["outputs"])
        if self.outputs and sorted(names) != sorted(self.outputs):
            return f"outputs {', '.join(names)}; expected {', '.join(self.outputs)}"
        return None


@dataclass(frozen=True)
class Encoded:
    """A protocol's request and the check for its answers."""

    request: PreparedRequest
    check: ResponseCheck


def _json_values(array: np.ndarray[Any, Any]) -> Any:
    """Something orjson writes as the nested JSON list of ``array``."""
    if array.dtype == object:
        return np.vectorize(lambda v: v.decode("utf-8", "replace"), otypes=[object])(array).tolist()
    if array.dtype.kind == "V" or array.dtype.name == "bfloat16":
        return np.ascontiguousarray(array.astype(np.float32))
    return np.ascontiguousarray(array)


def _dumps(value: Any) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY)


def _output_names(model: ModelSpec) -> tuple[str, ...]:
    return tuple(o.name for o in model.outputs)


def _datatypes(model: ModelSpec) -> dict[str, str]:
    return {spec.name: spec.datatype for spec in model.inputs}


def v2_json(model: ModelSpec, inputs: Inputs, target: Target, version: str | None) -> Encoded:
    """KServe V2 JSON: every input with its flat ``data``; every output returned as JSON."""
    types = _datatypes(model)
    entries = [
        {
            "name": name,
            "shape": list(array.shape),
            "datatype": types[name],
            "data": _json_values(array.reshape(-1)),
        }
        for name, array in inputs.items()
    ]
    body = _dumps({"inputs": entries})
    path = model_path(target, model.name, version) + "/infer"
    request = PreparedRequest("POST", path, (("Content-Type", _JSON),), body)
    return Encoded(request, ResponseCheck("v2-json", _output_names(model)))


def _raw_bytes(array: np.ndarray[Any, Any]) -> bytes:
    """Little-endian, row-major bytes; ``BYTES`` elements as 4-byte length plus data."""
    if array.dtype == object:
        return b"".join(struct.pack("<I", len(v)) + v for v in array.reshape(-1))
    data = np.ascontiguousarray(array)
    return (data.byteswap() if sys.byteorder == "big" else data).tobytes()


def v2_binary(model: ModelSpec, inputs: Inputs, target: Target, version: str | None) -> Encoded:
    """KServe V2 with the binary tensor extension, in and out, as ``perf_analyzer`` sends it."""
    types = _datatypes(model)
    raws = [_raw_bytes(array) for array in inputs.values()]
    header: dict[str, Any] = {
        "inputs": [
            {
                "name": name,
                "shape": list(array.shape),
                "datatype": types[name],
                "parameters": {"binary_data_size": len(raw)},
            }
            for (name, array), raw in zip(inputs.items(), raws, strict=True)
        ]
    }
    if model.outputs:
        header["outputs"] = [
            {"name": name, "parameters": {"binary_data": True}} for name in _output_names(model)
        ]
    else:
        header["parameters"] = {"binary_data_output": True}
    header_bytes = orjson.dumps(header)
    headers = (
        ("Content-Type", "application/octet-stream"),
        ("Inference-Header-Content-Length", str(len(header_bytes))),
    )
    path = model_path(target, model.name, version) + "/infer"
    request = PreparedRequest("POST", path, headers, header_bytes + b"".join(raws))
    return Encoded(request, ResponseCheck("v2-binary", _output_names(model)))


def tfserving(model: ModelSpec, inputs: Inputs, target: Target, version: str | None) -> Encoded:
    """TF Serving ``:predict``: the row format (``instances``) when every input has the same
    first dimension, else the columnar format (``inputs``)."""
    firsts = {array.shape[0] if array.ndim else None for array in inputs.values()}
    rows = firsts.pop() if len(firsts) == 1 else None
    values = {name: _json_values(array) for name, array in inputs.items()}
    if rows is not None:
        if len(values) == 1:
            instances: Any = next(iter(values.values()))
        else:
            instances = [{name: value[i] for name, value in values.items()} for i in range(rows)]
        body = _dumps({"instances": instances})
        check = ResponseCheck("tf-rows", rows=rows)
    else:
        body = _dumps({"inputs": values})
        check = ResponseCheck("tf-columns")
    path = f"{target.prefix}/v1/models/{quote(model.name, safe='')}"
    if version:
        path += f"/versions/{version}"
    request = PreparedRequest("POST", path + ":predict", (("Content-Type", _JSON),), body)
    return Encoded(request, check)


Encoder = Callable[[ModelSpec, Inputs, Target, str | None], Encoded]

#: One encoder per ``--protocol``; the keys are ``settings.PROTOCOLS``.
ENCODERS: dict[str, Encoder] = {"v2-json": v2_json, "v2-binary": v2_binary, "tfserving": tfserving}


def encode_request(
    protocol: str, model: ModelSpec, inputs: Inputs, target: Target, version: str | None
) -> Encoded:
    """The request for ``protocol``, built once; ``version`` None names no version."""
    return ENCODERS[protocol](model, inputs, target, version)
