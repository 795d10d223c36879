"""``modelport.bench``: the pure parts (settings, workload, encoding, statistics, reports), then
the client and the load modes against a scripted HTTP server on the loopback interface. Last, the
pure parts of benchmarks/run.py, the harness that measures docs/benchmarks.md."""

from __future__ import annotations

import asyncio
import csv
import dataclasses
import importlib.util
import io
import json
import math
import struct
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from time import perf_counter_ns
from typing import Any

import httptools
import httpx
import numpy as np
import pytest
from rich.console import Console

from modelport.bench import UsageError, make_settings, run_bench
from modelport.bench.encoding import ResponseCheck, encode_request
from modelport.bench.measure import Recorder, StepSamples
from modelport.bench.modes import StepPlan
from modelport.bench.report import format_latency, notes, write_csv, write_json
from modelport.bench.runner import plan_step, run_step
from modelport.bench.server import ModelSpec, TensorSpec
from modelport.bench.settings import (
    LoadStep,
    Target,
    parse_concurrency_list,
    parse_concurrency_range,
    parse_rate_list,
    parse_shapes,
    parse_url,
)
from modelport.bench.stats import percentile, summarize
from modelport.bench.workload import generate_inputs, load_inputs, random_tensor, resolve_shape

TARGET = Target("127.0.0.1", 8501)
TABULAR = ModelSpec(
    name="tabular",
    version="1",
    inputs=(TensorSpec("features", "FP32", (-1, 4)), TensorSpec("category", "INT64", (-1, 1))),
    outputs=(TensorSpec("probabilities", "FP32", (-1, 3)), TensorSpec("score", "FP32", (-1, 1))),
)
MNIST = ModelSpec(
    name="mnist",
    version="2",
    inputs=(TensorSpec("images", "FP32", (-1, 784)),),
    outputs=(TensorSpec("scores", "FP32", (-1, 10)),),
)


# ---- settings --------------------------------------------------------------------------------


def test_concurrency_list() -> None:
    assert parse_concurrency_list("1,8, 32") == [1, 8, 32]
    assert parse_concurrency_list("4") == [4]
    with pytest.raises(UsageError, match="below 1"):
        parse_concurrency_list("1,0")
    with pytest.raises(UsageError, match="not a whole number"):
        parse_concurrency_list("1,x")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1:64:2", [1, 2, 4, 8, 16, 32, 64]),
        ("1:64", [1, 2, 4, 8, 16, 32, 64]),
        ("1:48", [1, 2, 4, 8, 16, 32]),
        ("2:50:5", [2, 10, 50]),
        ("3:3", [3]),
    ],
)
def test_concurrency_range(text: str, expected: list[int]) -> None:
    assert parse_concurrency_range(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("8:2", "end 2 is below start 8"),
        ("1:8:1", "factor must be 2 or more"),
        ("1", "expected start:end"),
        ("1:2:3:4", "expected start:end"),
        ("0:8", "below 1"),
        ("a:8", "not a whole number"),
    ],
)
def test_concurrency_range_errors(text: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        parse_concurrency_range(text)


def test_rates() -> None:
    assert parse_rate_list("500") == [500.0]
    assert parse_rate_list("0.5,100") == [0.5, 100.0]
    for bad in ("0", "-1", "inf", "x"):
        with pytest.raises(UsageError):
            parse_rate_list(bad)


def test_shapes() -> None:
    assert parse_shapes(["x:5", "text:2,3"]) == {"x": (5,), "text": (2, 3)}
    assert parse_shapes(["a:b:4"]) == {"a:b": (4,)}  # the last colon separates
    for bad in (["x"], ["x:"], [":3"], ["x:-1"], ["x:1", "x:2"]):
        with pytest.raises(UsageError):
            parse_shapes(bad)


@pytest.mark.parametrize(
    ("text", "target"),
    [
        ("http://127.0.0.1:8501", Target("127.0.0.1", 8501)),
        ("localhost:9000", Target("localhost", 9000)),
        ("http://example.test", Target("example.test", 80)),
        ("http://[::1]:8501/base/", Target("::1", 8501, "/base")),
    ],
)
def test_url(text: str, target: Target) -> None:
    assert parse_url(text) == target


def test_url_errors_and_host_header() -> None:
    with pytest.raises(UsageError, match="only http://"):
        parse_url("https://localhost:8501")
    with pytest.raises(UsageError):
        parse_url("http://localhost:99999")
    assert Target("::1", 8501).host_header == "[::1]:8501"
    assert Target("::1", 8501, "/base").url == "http://[::1]:8501/base"


def test_settings_steps_and_defaults() -> None:
    settings = make_settings("mnist")
    assert settings.steps == (LoadStep(concurrency=1),)
    assert settings.mode == "concurrency"
    assert settings.batch_size == 1
    rate = make_settings("mnist", request_rate="10,20")
    assert [s.rate for s in rate.steps] == [10.0, 20.0]
    assert rate.mode == "rate"
    assert rate.steps[0].label == "rate 10/s"
    swept = make_settings("mnist", concurrency_range="1:4")
    assert [s.concurrency for s in swept.steps] == [1, 2, 4]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"concurrency": "1", "request_rate": "5"}, "give only one of"),
        ({"concurrency": "1", "concurrency_range": "1:4"}, "give only one of"),
        ({"input_data": Path("x.json"), "batch_size": 2}, "--input-data sends"),
        ({"input_data": Path("x.json"), "shapes": ["x:1"]}, "--input-data sends"),
        ({"version": 0}, "--version"),
        ({"batch_size": 0}, "--batch-size"),
        ({"protocol": "grpc"}, "--protocol"),
        ({"distribution": "uniform"}, "--request-distribution"),
        ({"duration_s": 0.0}, "--duration"),
        ({"warmup_s": -1.0}, "--warmup"),
        ({"processes": 0}, "--processes"),
        ({"timeout_s": 0.0}, "--timeout"),
    ],
)
def test_settings_errors(options: dict[str, Any], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        make_settings("mnist", **options)


# ---- workload --------------------------------------------------------------------------------


def test_resolve_shape() -> None:
    features = TensorSpec("features", "FP32", (-1, 4))
    assert resolve_shape(features, 8) == (8, 4)
    assert resolve_shape(TensorSpec("steps", "INT64", (1,)), 8) == (1,)  # no batch dimension
    dynamic = TensorSpec("x", "FP32", (-1, -1, 3))
    assert resolve_shape(dynamic, 2, (5, 3)) == (2, 5, 3)  # after the batch dimension
    assert resolve_shape(dynamic, 2, (4, 5, 3)) == (4, 5, 3)  # the whole shape
    with pytest.raises(UsageError, match=r"--shape x:N,3"):
        resolve_shape(dynamic, 2)
    with pytest.raises(UsageError, match="does not match"):
        resolve_shape(dynamic, 2, (5, 4))
    with pytest.raises(UsageError, match="do not fit"):
        resolve_shape(dynamic, 2, (5,))


@pytest.mark.parametrize(
    "datatype",
    ["BOOL", "UINT8", "UINT64", "INT8", "INT32", "INT64", "FP16", "FP32", "FP64", "BF16", "BYTES"],
)
def test_random_tensor_has_the_datatype(datatype: str) -> None:
    array = random_tensor(datatype, (3, 2), np.random.default_rng(0), string_length=5)
    assert array.shape == (3, 2)
    if datatype == "BYTES":
        assert all(isinstance(v, bytes) and len(v) == 5 for v in array.reshape(-1))
    elif datatype == "BOOL":
        assert array.dtype == np.bool_
    elif datatype.startswith(("INT", "UINT")):
        assert ((array >= 0) & (array < 10)).all()
    else:
        values = array.astype(np.float64)
        assert ((values >= 0) & (values <= 1)).all()


def test_generate_inputs_is_reproducible() -> None:
    first = generate_inputs(TABULAR, 4, {}, seed=3)
    again = generate_inputs(TABULAR, 4, {}, seed=3)
    other = generate_inputs(TABULAR, 4, {}, seed=4)
    assert list(first) == ["features", "category"]
    assert first["features"].shape == (4, 4)
    assert first["features"].dtype == np.float32
    assert first["category"].dtype == np.int64
    assert np.array_equal(first["features"], again["features"])
    assert not np.array_equal(first["features"], other["features"])
    with pytest.raises(UsageError, match="does not take"):
        generate_inputs(TABULAR, 1, {"nope": (1,)})
    with pytest.raises(UsageError, match="cannot generate"):
        generate_inputs(ModelSpec("m", None, (TensorSpec("x", "COMPLEX", (1,)),), ()), 1, {})


def test_load_inputs(tmp_path: Path) -> None:
    path = tmp_path / "inputs.json"
    path.write_text(json.dumps({"inputs": {"features": [[1, 2, 3, 4]], "category": [[2]]}}))
    inputs = load_inputs(path, TABULAR)
    assert inputs["features"].dtype == np.float32
    assert inputs["category"].tolist() == [[2]]
    strings = ModelSpec("s", None, (TensorSpec("text", "BYTES", (-1,)),), ())
    path.write_text(json.dumps({"inputs": {"text": ["héllo", "x"]}}))
    assert load_inputs(path, strings)["text"].tolist() == ["héllo".encode(), b"x"]


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"inputs": {"features": [[1, 2, 3, 4]]}}, "missing category"),
        ({"inputs": {"features": [[1, 2, 3, 4]], "category": [[2]], "x": [1]}}, "unknown x"),
        ({"inputs": {"features": [[1, 2, 3]], "category": [[2]]}}, "has shape"),
        ({"inputs": {"features": [[1, 2], [3]], "category": [[2]]}}, "is not FP32 data"),
        ({"data": []}, "expected"),
    ],
)
def test_load_inputs_errors(tmp_path: Path, document: Any, message: str) -> None:
    path = tmp_path / "inputs.json"
    path.write_text(json.dumps(document))
    with pytest.raises(UsageError, match=message):
        load_inputs(path, TABULAR)


def test_load_inputs_unreadable(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="No such file"):
        load_inputs(tmp_path / "missing.json", TABULAR)
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(UsageError, match="not valid JSON"):
        load_inputs(tmp_path / "bad.json", TABULAR)


# ---- encoding --------------------------------------------------------------------------------


def tabular_inputs(rows: int = 2) -> dict[str, np.ndarray[Any, Any]]:
    return generate_inputs(TABULAR, rows, {}, seed=0)


def test_v2_json() -> None:
    inputs = tabular_inputs()
    encoded = encode_request("v2-json", TABULAR, inputs, TARGET, "1")
    request = encoded.request
    assert request.path == "/v2/models/tabular/versions/1/infer"
    body = json.loads(request.body)
    assert [i["name"] for i in body["inputs"]] == ["features", "category"]
    assert body["inputs"][0]["shape"] == [2, 4]
    assert body["inputs"][0]["datatype"] == "FP32"
    assert np.allclose(body["inputs"][0]["data"], inputs["features"].reshape(-1))
    assert body["inputs"][1]["data"] == inputs["category"].reshape(-1).tolist()


def test_v2_binary_round_trip() -> None:
    inputs = tabular_inputs()
    encoded = encode_request("v2-binary", TABULAR, inputs, TARGET, None)
    request = encoded.request
    headers = dict(request.headers)
    assert headers["Content-Type"] == "application/octet-stream"
    split = int(headers["Inference-Header-Content-Length"])
    header = json.loads(request.body[:split])
    sizes = [i["parameters"]["binary_data_size"] for i in header["inputs"]]
    assert sizes == [2 * 4 * 4, 2 * 1 * 8]
    raw = request.body[split:]
    assert np.array_equal(np.frombuffer(raw[:32], "<f4").reshape(2, 4), inputs["features"])
    assert np.array_equal(np.frombuffer(raw[32:], "<i8").reshape(2, 1), inputs["category"])
    assert header["outputs"] == [
        {"name": "probabilities", "parameters": {"binary_data": True}},
        {"name": "score", "parameters": {"binary_data": True}},
    ]


def test_v2_binary_bytes_are_length_prefixed() -> None:
    model = ModelSpec("s", None, (TensorSpec("text", "BYTES", (-1,)),), ())
    inputs = {"text": np.array([b"ab", b"xyz"], dtype=object)}
    body = encode_request("v2-binary", model, inputs, TARGET, None).request.body
    assert body.endswith(struct.pack("<I", 2) + b"ab" + struct.pack("<I", 3) + b"xyz")
    assert b'"binary_data_output":true' in body  # no outputs in the metadata: ask for all
    as_json = encode_request("v2-json", model, inputs, TARGET, None).request.body
    assert json.loads(as_json)["inputs"][0]["data"] == ["ab", "xyz"]
    as_tf = encode_request("tfserving", model, inputs, TARGET, None).request.body
    assert json.loads(as_tf) == {"instances": ["ab", "xyz"]}


@pytest.mark.parametrize(("datatype", "raw"), [("FP16", "<f2"), ("BF16", None), ("BOOL", "?")])
def test_other_datatypes_encode(datatype: str, raw: str | None) -> None:
    model = ModelSpec("m", None, (TensorSpec("x", datatype, (-1, 3)),), ())
    inputs = generate_inputs(model, 2, {})
    values = json.loads(encode_request("v2-json", model, inputs, TARGET, None).request.body)
    expected = inputs["x"].astype(np.float32 if datatype != "BOOL" else np.bool_).reshape(-1)
    assert values["inputs"][0]["data"] == pytest.approx(expected.tolist())
    binary = encode_request("v2-binary", model, inputs, TARGET, None).request.body
    size = 2 * 3 * (1 if datatype == "BOOL" else 2)
    assert binary.endswith(inputs["x"].tobytes())
    assert f'"binary_data_size":{size}'.encode() in binary
    if raw is not None:
        assert np.array_equal(np.frombuffer(binary[-size:], raw).reshape(2, 3), inputs["x"])


def test_tfserving_rows_and_columns() -> None:
    rows = encode_request("tfserving", TABULAR, tabular_inputs(), TARGET, None)
    assert rows.request.path == "/v1/models/tabular:predict"
    instances = json.loads(rows.request.body)["instances"]
    assert len(instances) == 2
    assert set(instances[0]) == {"features", "category"}
    assert rows.check == ResponseCheck("tf-rows", rows=2)
    single = encode_request("tfserving", MNIST, generate_inputs(MNIST, 3, {}), TARGET, "2")
    assert single.request.path == "/v1/models/mnist/versions/2:predict"
    assert np.array(json.loads(single.request.body)["instances"]).shape == (3, 784)
    model = ModelSpec(
        "slow", None, (TensorSpec("x", "FP32", (-1, 2)), TensorSpec("steps", "INT64", (1,))), ()
    )
    columns = encode_request("tfserving", model, generate_inputs(model, 4, {}), TARGET, None)
    body = json.loads(columns.request.body)
    assert np.array(body["inputs"]["x"]).shape == (4, 2)
    assert body["inputs"]["steps"] == [body["inputs"]["steps"][0]]


def test_wire_bytes() -> None:
    request = encode_request("v2-json", MNIST, generate_inputs(MNIST, 1, {}), TARGET, None).request
    wire = request.wire_bytes(Target("127.0.0.1", 8501, "/prefix"))
    head, _, body = wire.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert lines[0] == b"POST /v2/models/mnist/infer HTTP/1.1"
    assert b"Host: 127.0.0.1:8501" in lines
    assert f"Content-Length: {len(request.body)}".encode() in lines
    assert body == request.body


@pytest.mark.parametrize(
    ("check", "body", "problem"),
    [
        (ResponseCheck("v2-json", ("score",)), b'{"outputs":[{"name":"score","data":[1]}]}', None),
        (ResponseCheck("v2-json", ("score",)), b'{"outputs":[{"name":"x","data":[1]}]}', "x"),
        (ResponseCheck("v2-json"), b"not json", "unreadable"),
        (ResponseCheck("tf-rows", rows=2), b'{"predictions":[1,2]}', None),
        (ResponseCheck("tf-rows", rows=2), b'{"predictions":[1]}', "1 predictions"),
        (ResponseCheck("tf-columns"), b'{"outputs":{"y":[1]}}', None),
        (ResponseCheck("tf-columns"), b'{"predictions":[]}', "no outputs"),
    ],
)
def test_response_check(check: ResponseCheck, body: bytes, problem: str | None) -> None:
    found = check(body)
    if problem is None:
        assert found is None
    else:
        assert found is not None
        assert problem in found


def test_response_check_binary() -> None:
    header = b'{"outputs":[{"name":"y","parameters":{"binary_data_size":4}}]}'
    check = ResponseCheck("v2-binary", ("y",))
    assert check(header + b"\xff\x00\x80\x01") is None
    assert "announces 4 bytes" in (check(header + b"\x00") or "")


# ---- statistics and reports ------------------------------------------------------------------


def test_percentile_is_nearest_rank() -> None:
    hundred = np.arange(1, 101)
    assert percentile(hundred, 50) == 50
    assert percentile(hundred, 90) == 90
    assert percentile(hundred, 99) == 99
    assert percentile(hundred, 99.9) == 100
    thousand = np.arange(1, 1001)
    assert percentile(thousand, 99.9) == 999  # 99.9 * 1000 / 100 is not exactly 999 in floats
    assert percentile(np.array([7]), 50) == 7
    assert percentile(np.array([1, 2]), 50) == 1
    assert percentile(np.array([1, 2]), 51) == 2
    assert math.isnan(percentile(np.array([]), 50))


def test_summarize() -> None:
    samples = StepSamples(
        latencies_ns=np.array([3000, 1000, 2000, 4000], dtype=np.int64),
        window_s=2.0,
        errors={"HTTP 500": 2},
        other_errors={"timeout": 1},
        error_examples={"HTTP 500": "boom"},
    )
    summary = summarize(LoadStep(concurrency=4), samples)
    assert summary.requests == 4
    assert summary.requests_per_s == 2.0
    assert summary.latency_us["p50"] == 2.0
    assert summary.latency_us["max"] == 4.0
    assert summary.latency_us["mean"] == 2.5
    assert summary.error_count == 2
    assert summary.any_errors
    assert notes([summary]) == [
        "concurrency 4: HTTP 500: 2 in the window; e.g. boom",
        "concurrency 4: timeout: 0 in the window, 1 during warm-up or drain",
    ]
    empty = summarize(LoadStep(rate=10.0), StepSamples(np.empty(0, np.int64), 1.0))
    assert empty.requests == 0
    assert math.isnan(empty.latency_us["p99"])
    assert not empty.any_errors


def test_recorder_grows_and_merges() -> None:
    recorder = Recorder(capacity=1024)
    recorder.begin()
    for value in range(3000):
        recorder.add(value)
    recorder.error("HTTP 503", "busy")
    recorder.end()
    samples = recorder.samples()
    assert samples.latencies_ns.tolist() == list(range(3000))
    merged = StepSamples.merge([samples, samples])
    assert len(merged.latencies_ns) == 6000
    assert merged.errors == {"HTTP 503": 2}
    assert merged.error_examples == {"HTTP 503": "busy"}


@pytest.mark.parametrize(
    ("us", "text"),
    [
        (7.456, "7.46 us"),
        (87.54, "87.5 us"),
        (131.2, "131 us"),
        (2260.0, "2.26 ms"),
        (45_600.0, "45.6 ms"),
        (1_500_000.0, "1.50 s"),
        (math.nan, "-"),
    ],
)
def test_format_latency(us: float, text: str) -> None:
    assert format_latency(us) == text


def test_json_and_csv_reports(tmp_path: Path) -> None:
    settings = make_settings("mnist", concurrency="1,2", duration_s=1.0)
    summaries = [
        summarize(step, StepSamples(np.array([1000, 2000], dtype=np.int64), 1.0))
        for step in settings.steps
    ]
    write_json(tmp_path / "r.json", settings, summaries, {"request_bytes": 10})
    document = json.loads((tmp_path / "r.json").read_text())
    assert document["settings"]["model"] == "mnist"
    assert document["request_bytes"] == 10
    assert [s["concurrency"] for s in document["steps"]] == [1, 2]
    assert document["steps"][0]["latency_us"]["p50"] == 1.0
    write_csv(tmp_path / "r.csv", settings, summaries)
    with (tmp_path / "r.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["concurrency"], r["requests"], r["errors"]) for r in rows] == [
        ("1", "2", "0"),
        ("2", "2", "0"),
    ]
    assert rows[0]["p99.9_us"] == "2.0"


def test_plan_step_divides_the_load() -> None:
    settings = make_settings("mnist", concurrency="5", processes=2, warmup_s=1.0, duration_s=2.0)
    plans = plan_step(settings.steps[0], settings, b"", ResponseCheck("v2-json"))
    assert [p.concurrency for p in plans] == [3, 2]
    assert plans[0].end_ns - plans[0].measure_ns == 2_000_000_000
    assert plans[0].measure_ns - plans[0].start_ns == 1_000_000_000
    rate = make_settings("mnist", request_rate="100", processes=4)
    plans = plan_step(rate.steps[0], rate, b"", ResponseCheck("v2-json"))
    assert [p.rate for p in plans] == [25.0] * 4
    assert [p.phase for p in plans] == [0.0, 0.25, 0.5, 0.75]
    assert len({p.start_ns for p in plans}) == 1
    single = make_settings("mnist", concurrency="1", processes=4)
    assert len(plan_step(single.steps[0], single, b"", ResponseCheck("v2-json"))) == 1


# ---- the client and the load modes, against a scripted server --------------------------------

#: What the scripted server does with request number n: answer (status, body), or None to never
#: answer, or "close" to drop the connection.
Script = Callable[[int], "tuple[int, bytes] | str | None"]
METADATA = json.dumps(
    {
        "name": "m",
        "versions": ["1"],
        "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 2]}],
        "outputs": [{"name": "y", "datatype": "FP32", "shape": [-1, 2]}],
    }
).encode()
GOOD = b'{"outputs":[{"name":"y","data":[1,2]}]}'


class ScriptedServer(asyncio.Protocol):
    """Answers GETs with METADATA and POSTs as ``script`` says, counting POSTs."""

    count = 0

    def __init__(self, script: Script) -> None:
        self.script = script
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.parser.feed_data(data)

    def on_message_complete(self) -> None:
        assert self.transport is not None
        if self.parser.get_method() == b"GET":
            self.answer(200, METADATA)
            return
        action = self.script(ScriptedServer.count)
        ScriptedServer.count += 1
        if action == "close":
            self.transport.close()
        elif isinstance(action, tuple):
            self.answer(*action)

    def answer(self, status: int, body: bytes) -> None:
        assert self.transport is not None
        head = f"HTTP/1.1 {status} X\r\ncontent-length: {len(body)}\r\n\r\n".encode()
        self.transport.write(head + body)


async def start_server(script: Script) -> tuple[asyncio.Server, int]:
    ScriptedServer.count = 0
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: ScriptedServer(script), "127.0.0.1", 0)
    port: int = server.sockets[0].getsockname()[1]
    return server, port


def step_plan(port: int, **options: Any) -> StepPlan:
    start = perf_counter_ns() + 20_000_000
    encoded = encode_request("v2-json", TABULAR, tabular_inputs(1), TARGET, None)
    return StepPlan(
        target=Target("127.0.0.1", port),
        request=encoded.request.wire_bytes(Target("127.0.0.1", port)),
        check=ResponseCheck("v2-json", ("y",)),
        start_ns=start,
        measure_ns=start,
        end_ns=start + 300_000_000,
        **options,
    )


def run_against(script: Script, **options: Any) -> StepSamples:
    async def main() -> StepSamples:
        server, port = await start_server(script)
        try:
            return await run_step(step_plan(port, **options))
        finally:
            server.close()

    return asyncio.run(main())


def all_errors(samples: StepSamples) -> dict[str, int]:
    """Errors inside and outside the window: a stalled test machine may move one across."""
    kinds = set(samples.errors) | set(samples.other_errors)
    return {k: samples.errors.get(k, 0) + samples.other_errors.get(k, 0) for k in kinds}


def test_closed_loop_counts_answers_and_errors_by_kind() -> None:
    def script(n: int) -> tuple[int, bytes] | str:
        if n % 4 == 1:
            return (500, b'{"error":"boom"}')
        if n % 4 == 2:
            return "close"
        return (200, GOOD)

    samples = run_against(script, concurrency=2)
    assert len(samples.latencies_ns) > 0
    assert (samples.latencies_ns > 0).all()
    errors = all_errors(samples)
    assert errors["HTTP 500"] > 0
    assert samples.error_examples["HTTP 500"] == "boom"
    assert errors["connection closed"] > 0
    assert samples.connections == 2


def test_timeouts_and_invalid_answers() -> None:
    def script(n: int) -> tuple[int, bytes] | None:
        if n == 0:
            return None  # never answered
        return (200, b'{"outputs":[]}' if n % 2 else GOOD)

    samples = run_against(script, concurrency=1, timeout_s=0.1, check_every=1)
    errors = all_errors(samples)
    assert errors["timeout"] == 1
    assert errors["invalid answer"] > 0
    assert "expected y" in samples.error_examples["invalid answer"]
    assert len(samples.latencies_ns) > 0


def test_open_loop_sends_on_schedule() -> None:
    samples = run_against(lambda n: (200, GOOD), rate=200.0)
    assert 0 < samples.sent <= 61  # 0.3 s at 200/s: 60, fewer if this machine stalls at the end
    assert len(samples.latencies_ns) > 0
    assert not samples.errors


@pytest.fixture
def threaded_server() -> Iterator[Callable[[Script], int]]:
    """Scripted servers on their own threads, for code that runs its own event loop."""
    started: list[tuple[asyncio.AbstractEventLoop, threading.Thread, asyncio.Server]] = []

    def start(script: Script) -> int:
        loop = asyncio.new_event_loop()
        server, port = loop.run_until_complete(start_server(script))
        thread = threading.Thread(target=loop.run_forever, daemon=True)
        thread.start()
        started.append((loop, thread, server))
        return port

    yield start
    for loop, thread, server in started:
        loop.call_soon_threadsafe(server.close)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.run_until_complete(server.wait_closed())
        loop.close()


def test_run_bench_exits_1_when_requests_fail(
    threaded_server: Callable[[Script], int], tmp_path: Path
) -> None:
    port = threaded_server(lambda n: (503, b'{"error":"busy"}') if n % 3 == 2 else (200, GOOD))
    out, err = io.StringIO(), io.StringIO()
    settings = make_settings(
        "m",
        url=f"http://127.0.0.1:{port}",
        duration_s=0.3,
        warmup_s=0.0,
        concurrency="2",
        json_path=tmp_path / "r.json",
    )
    code = run_bench(settings, Console(file=out, width=200), Console(file=err, width=200))
    assert code == 1
    assert "HTTP 503" in out.getvalue()
    assert "e.g. busy" in out.getvalue()
    assert "modelport bench: m version 1" in err.getvalue()
    step = json.loads((tmp_path / "r.json").read_text())["steps"][0]
    assert step["errors"] + sum(step["errors_outside_window"].values()) > 0


def test_run_bench_stops_when_the_first_request_fails(
    threaded_server: Callable[[Script], int],
) -> None:
    port = threaded_server(lambda n: (400, b'{"error":"wrong shape"}'))
    err = io.StringIO()
    settings = make_settings("m", url=f"http://127.0.0.1:{port}", duration_s=5.0)
    code = run_bench(settings, Console(file=io.StringIO()), Console(file=err, width=200))
    assert code == 1
    assert "refused the benchmark request" in err.getvalue()
    assert "400 wrong shape" in err.getvalue()


# ---- benchmarks/run.py: the harness behind docs/benchmarks.md ---------------------------------


def load_harness() -> Any:
    """benchmarks/run.py as a module (it is a script, not part of the package)."""
    path = Path(__file__).resolve().parents[2] / "benchmarks" / "run.py"
    spec = importlib.util.spec_from_file_location("benchmarks_run", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while being defined
    spec.loader.exec_module(module)
    return module


harness = load_harness()

#: What perf_analyzer 2.50 writes with -f: KServe V2 (with the server's statistics), then TF
#: Serving (client columns only). Latencies in microseconds.
PA_TRITON_CSV = (
    "Concurrency,Inferences/Second,Client Send,Network+Server Send/Recv,Server Queue,"
    "Server Compute Input,Server Compute Infer,Server Compute Output,Client Recv,"
    "p50 latency,p90 latency,p95 latency,p99 latency\n"
    "32,2254.62,4,13467,0,0,690,0,1,12781,23254,27875,38813\n"
)
PA_TFSERVING_CSV = (
    "Concurrency,Inferences/Second,Client Send,Client Recv,p50 latency,p90 latency,"
    "p95 latency,p99 latency\n"
    "1,930.775,6,0,488,2525,4616,8083\n"
)


@pytest.mark.parametrize(
    ("text", "rps", "p50", "p99"),
    [(PA_TRITON_CSV, 2254.62, 12781.0, 38813.0), (PA_TFSERVING_CSV, 930.775, 488.0, 8083.0)],
)
def test_harness_reads_perf_analyzer_reports(text: str, rps: float, p50: float, p99: float) -> None:
    result = harness.parse_perf_analyzer_csv(text)
    assert (result.requests_per_s, result.p50_us, result.p99_us) == (rps, p50, p99)
    assert result.non_2xx == result.socket_errors == 0


@pytest.mark.parametrize("text", ["", "Concurrency,Inferences/Second\n", "a,b\n1,2\n"])
def test_harness_rejects_unreadable_perf_analyzer_reports(text: str) -> None:
    with pytest.raises(harness.BenchError, match="perf_analyzer's report"):
        harness.parse_perf_analyzer_csv(text)


def test_harness_still_reads_wrk() -> None:
    output = (
        "  Latency Distribution\n     50%  146.00us\n     75%  200.00us\n     99%    2.81ms\n"
        "  120 requests in 1.00s, 1 MB read\n  Non-2xx or 3xx responses: 3\n"
        "Requests/sec:   6553.10\n"
    )
    result = harness.parse_wrk(output)
    assert (result.requests_per_s, result.p50_us, result.p99_us) == (6553.1, 146.0, 2810.0)
    assert result.non_2xx == 3


def groups_by_cell(groups: list[Any]) -> dict[tuple[str, str, int], tuple[str, ...]]:
    return {(g.family, g.protocol, g.concurrency): g.endpoints for g in groups}


def test_harness_plans_grpc_and_tabular_cells() -> None:
    groups = harness.plan(harness.FAMILIES)
    cells = groups_by_cell(groups)
    both = ("mp-mnist", "mp-mnist-batched")
    for concurrency in (1, 32):
        assert cells[("mnist", "v2-grpc", concurrency)] == both
        assert cells[("mnist", "tf-grpc", concurrency)] == ("mp-mnist",)
        assert cells[("mnist", "pa-v2-binary", concurrency)] == both
        assert cells[("tabular", "v2-json", concurrency)] == ("mp-tabular", "floor-echo-tabular")
        assert cells[("tabular", "v2-binary", concurrency)] == ("mp-tabular",)
        assert cells[("tabular", "v2-grpc", concurrency)] == ("mp-tabular",)
        assert cells[("tabular", "tf-json", concurrency)] == ("mp-tabular", "floor-echo-tabular")
    # perf_analyzer's TF Serving client cannot send INT64 inputs, so tabular has no TF gRPC.
    assert not any(key[:2] == ("tabular", "tf-grpc") for key in cells)
    assert not any(key[1] in harness.PA_PROTOCOLS and key[2] not in (1, 32) for key in cells)
    assert [g.protocol for g in groups if g.cross_check] == ["pa-v2-binary", "pa-v2-binary"]
    # Every planned cell has a request form and an endpoint of its family.
    protocols = harness.make_protocols(harness.FAMILIES)
    for group in groups:
        protocol = protocols[(group.family, group.protocol)]
        assert (protocol.client == harness.PERF_ANALYZER) == (
            group.protocol in harness.PA_PROTOCOLS
        )
        assert {harness.ENDPOINT_BY_KEY[key].family for key in group.endpoints} == {group.family}
    without = harness.plan(harness.FAMILIES, perf_analyzer=False)
    assert not harness.uses_perf_analyzer(without)
    assert harness.cell_count(groups) - harness.cell_count(without) == 12
    assert groups_by_cell(without) == {
        key: value for key, value in cells.items() if key[1] not in harness.PA_PROTOCOLS
    }


def test_harness_old_cells_are_unchanged() -> None:
    cells = groups_by_cell(harness.plan(("mnist", "minilm"), perf_analyzer=False))
    assert len(cells) == 4 * 2 + 2 + 4
    assert cells[("mnist", "v2-json", 64)] == (
        "mp-mnist",
        "mp-mnist-batched",
        "floor-ort",
        "floor-echo",
    )
    assert cells[("mnist", "tf-json", 32)] == ("mp-mnist", "floor-ort", "floor-echo")
    assert cells[("minilm", "v2-json", 16)] == ("mp-minilm", "mp-minilm-batched")


def test_harness_perf_analyzer_command(tmp_path: Path) -> None:
    protocols = harness.make_protocols(("mnist", "tabular"))
    tf = harness.perf_analyzer_argv(
        Path("/tools/perf_analyzer"),
        "127.0.0.1:8500",
        "mnist",
        protocols[("mnist", "tf-grpc")],
        tmp_path,
        concurrency=32,
        window_requests=5000,
        csv_path=tmp_path / "r.csv",
    )
    text = " ".join(tf)
    assert tf[:4] == ["taskset", "-c", "1", "/tools/perf_analyzer"]
    assert "-m mnist -u 127.0.0.1:8500 --service-kind tfserving -i grpc" in text
    assert "--shape=images:1,784" in tf
    assert "--concurrency-range 32:32" in text
    assert "--measurement-mode count_windows --measurement-request-count 5000" in text
    assert "-s 100" in text
    assert f"-f {tmp_path / 'r.csv'}" in text
    assert f"--input-data {tmp_path}" in text
    v2 = harness.perf_analyzer_argv(
        Path("pa"),
        "127.0.0.1:8500",
        "tabular",
        protocols[("tabular", "v2-grpc")],
        tmp_path,
        concurrency=1,
        window_requests=100,
        csv_path=tmp_path / "r.csv",
    )
    assert "-i grpc" in " ".join(v2)
    assert "--service-kind" not in v2
    assert not any(arg.startswith("--shape") for arg in v2)
    http = protocols[("mnist", "pa-v2-binary")]
    assert (http.client, http.transport, http.pa_options) == ("perf_analyzer", "http", ())
    assert http.body == protocols[("mnist", "v2-binary")].body  # to check the answer with


@pytest.mark.parametrize(
    ("rps", "seconds", "window"),
    [(3000.0, 4, 4000), (3000.0, 1, 1000), (10.0, 4, 100), (0.0, 4, 100), (math.nan, 4, 100)],
)
def test_harness_window_sizes(rps: float, seconds: int, window: int) -> None:
    assert harness.window_requests(rps, seconds) == window


def test_harness_tabular_requests(tmp_path: Path) -> None:
    protocols = harness.make_protocols(("tabular",))
    inputs = harness.request_inputs("tabular")
    assert inputs["features"].shape == (1, 4)
    assert inputs["features"].dtype == np.float32
    assert inputs["category"].shape == (1, 1)
    assert inputs["category"].dtype == np.int64
    v2 = json.loads(protocols[("tabular", "v2-json")].body)
    assert [(i["name"], i["datatype"], i["shape"]) for i in v2["inputs"]] == [
        ("features", "FP32", [1, 4]),
        ("category", "INT64", [1, 1]),
    ]
    tf = json.loads(protocols[("tabular", "tf-json")].body)
    assert list(tf["instances"][0]) == ["features", "category"]
    binary = protocols[("tabular", "v2-binary")]
    header = json.loads(binary.body[: binary.header_length])
    assert [i["parameters"]["binary_data_size"] for i in header["inputs"]] == [16, 8]
    assert [o["name"] for o in header["outputs"]] == ["probabilities", "score"]
    raw = binary.body[binary.header_length :]
    # perf_analyzer's input files hold the same values, one row per input.
    folder = harness.write_input_data("tabular", tmp_path)
    assert sorted(p.name for p in folder.iterdir()) == ["category", "features"]
    assert (folder / "features").read_bytes() + (folder / "category").read_bytes() == raw
    assert np.frombuffer((folder / "category").read_bytes(), "<i8").tolist() == [
        int(inputs["category"][0, 0])
    ]


def test_harness_mnist_requests_keep_their_bytes() -> None:
    protocols = harness.make_protocols(("mnist",))
    x = harness.mnist_input()
    assert json.loads(protocols[("mnist", "tf-json")].body) == {"instances": x.tolist()}
    binary = protocols[("mnist", "v2-binary")]
    assert binary.body[binary.header_length :] == x.astype("<f4").tobytes()
    assert json.loads(binary.body[: binary.header_length])["outputs"] == [
        {"name": "scores", "parameters": {"binary_data": True}}
    ]


def harness_response(body: Any, headers: dict[str, str] | None = None) -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return httpx.Response(200, content=content, headers=headers)


def test_harness_checks_answers_of_two_outputs() -> None:
    protocols = harness.make_protocols(("tabular",))
    tf = protocols[("tabular", "tf-json")]
    good = {"predictions": [{"probabilities": [0.2, 0.3, 0.5], "score": [0.1]}]}
    assert harness.answer_is_expected(tf, harness_response(good))
    missing = {"predictions": [{"probabilities": [0.2, 0.3, 0.5]}]}
    assert not harness.answer_is_expected(tf, harness_response(missing))
    v2 = protocols[("tabular", "v2-json")]
    outputs = [
        {"name": "probabilities", "shape": [1, 3], "datatype": "FP32", "data": [0.2, 0.3, 0.5]},
        {"name": "score", "shape": [1, 1], "datatype": "FP32", "data": [0.1]},
    ]
    assert harness.answer_is_expected(v2, harness_response({"outputs": outputs}))
    assert not harness.answer_is_expected(v2, harness_response({"outputs": outputs[:1]}))
    binary = protocols[("tabular", "v2-binary")]
    header = b'{"outputs":[]}'
    length = {"Inference-Header-Content-Length": str(len(header))}
    assert harness.answer_is_expected(binary, harness_response(header + bytes(16), length))
    assert not harness.answer_is_expected(binary, harness_response(header + bytes(12), length))


def load_result(rps: float) -> Any:
    return harness.LoadResult(
        requests_per_s=rps, p50_us=100.0, p99_us=200.0, non_2xx=0, socket_errors=0
    )


def test_harness_compares_grpc_with_json_and_cross_checks() -> None:
    results = {
        ("mp-mnist", "v2-json", 1): [load_result(100.0), load_result(200.0)],
        ("mp-mnist", "v2-binary", 1): [load_result(150.0), load_result(300.0)],
        ("mp-mnist", "pa-v2-binary", 1): [load_result(120.0), load_result(240.0)],
        ("mp-mnist", "v2-grpc", 1): [load_result(160.0), load_result(300.0)],
        ("floor-echo", "v2-json", 1): [load_result(400.0), load_result(400.0)],
    }
    measurements = harness.Measurements(results, {})
    cells = harness.aggregate(measurements)
    assert cells[("mp-mnist", "v2-grpc", 1)].vs_json == pytest.approx(1.55)  # median of 1.6, 1.5
    assert cells[("mp-mnist", "v2-grpc", 1)].ratio is None  # the floor has no gRPC
    assert cells[("mp-mnist", "v2-binary", 1)].ratio == pytest.approx(0.5625)
    groups = [harness.Group("mnist", "pa-v2-binary", 1, ("mp-mnist",), cross_check=True)]
    rows = harness.cross_check_rows(groups, cells, measurements)
    assert [(row[1], row[3], row[-1]) for row in rows] == [
        ("V2 binary", "wrk", "1.00x"),
        ("V2 binary", "perf_analyzer", "0.80x"),
        ("V2 gRPC", "perf_analyzer", "1.03x"),
    ]
    target = harness.target_grpc(measurements, harness.ENDPOINT_BY_KEY["mp-mnist"], 1)
    assert target.met
    assert target.measured.startswith("1.55x")


def test_harness_skips_perf_analyzer_cells_when_it_is_missing(tmp_path: Path) -> None:
    path, note = harness.find_perf_analyzer(tmp_path / "perf_analyzer", skip=False)
    assert path is None
    assert "run `make tools`" in note
    assert harness.find_perf_analyzer(tmp_path, skip=True) == (
        None,
        "skipped with --no-perf-analyzer",
    )
    binary = tmp_path / "pa"
    binary.write_text("#!/bin/sh\n")
    binary.chmod(0o755)
    assert harness.find_perf_analyzer(binary, skip=False) == (binary, "")
    settings = harness.Settings(
        duration_s=4,
        rounds=3,
        warmup_s=1,
        calls=20000,
        families=harness.FAMILIES,
        floor=harness.DEFAULT_FLOOR,
        output=None,
        quick=False,
        perf_analyzer=None,
        perf_analyzer_note=note,
    )
    assert not harness.uses_perf_analyzer(harness.settings_plan(settings))
    (target,) = harness.grpc_targets(harness.Measurements({}, {}), settings)
    assert target.met is None
    assert "make tools" in target.measured


def test_harness_command_line() -> None:
    args = harness.parse_args(["--models", "tabular,mnist", "--no-perf-analyzer"])
    assert args.models == ("mnist", "tabular")
    assert args.no_perf_analyzer
    assert harness.parse_args([]).models == (
        "mnist",
        "tabular",
        "minilm",
        "minilm_int8",
        "torchscript",
    )
    settings = harness.Settings(
        duration_s=4,
        rounds=3,
        warmup_s=1,
        calls=20000,
        families=("mnist", "tabular"),
        floor=harness.DEFAULT_FLOOR,
        output=None,
        quick=False,
        perf_analyzer=None,
        perf_analyzer_note="skipped with --no-perf-analyzer",
    )
    assert harness.reproduce_command(settings) == (
        ".venv/bin/python benchmarks/run.py --duration 4 --rounds 3 --models mnist,tabular "
        "--no-perf-analyzer"
    )


# ---- benchmarks/run.py: MiniLM int8 and TorchScript -------------------------------------------


def test_harness_picks_the_new_families() -> None:
    assert harness.parse_models("torchscript,minilm-int8, minilm") == (
        "minilm",
        "minilm_int8",
        "torchscript",
    )
    with pytest.raises(Exception, match="choose from mnist, tabular, minilm, minilm_int8"):
        harness.parse_models("minilm_fp16")
    args = harness.parse_args(["--quick", "--models", "minilm_int8,torchscript"])
    assert args.models == ("minilm_int8", "torchscript")
    assert (args.duration, args.rounds) == (1, 1)


def test_harness_plans_minilm_int8_and_torchscript_cells() -> None:
    groups = harness.plan(("minilm_int8", "torchscript"))
    cells = groups_by_cell(groups)
    minilm = (
        "mp-minilm-fp32",
        "mp-minilm-fp32-batched",
        "mp-minilm-int8",
        "mp-minilm-int8-batched",
    )
    assert cells == {
        ("minilm_int8", "v2-json", 1): minilm,
        ("minilm_int8", "v2-json", 16): minilm,
        **{
            ("torchscript", protocol, concurrency): ("mp-torchscript",)
            for protocol in ("v2-json", "v2-binary", "tf-json")
            for concurrency in (1, 16)
        },
    }
    assert not harness.uses_perf_analyzer(groups)  # no gRPC: these need no make tools
    assert harness.plan(("minilm_int8", "torchscript"), perf_analyzer=False) == groups
    # Every endpoint is served, requested and compared with an engine of its own family.
    protocols = harness.make_protocols(("minilm_int8", "torchscript"))
    for group in groups:
        assert (group.family, group.protocol) in protocols
        for key in group.endpoints:
            endpoint = harness.ENDPOINT_BY_KEY[key]
            engine = harness.ENGINE_BY_KEY[endpoint.engine]
            assert endpoint.family == engine.family == group.family
    models = {harness.ENDPOINT_BY_KEY[key].model: key for key in minilm}
    assert models == {
        "minilm_fp32": "mp-minilm-fp32",
        "minilm_fp32_batched": "mp-minilm-fp32-batched",
        "minilm_int8": "mp-minilm-int8",
        "minilm_int8_batched": "mp-minilm-int8-batched",
    }
    assert harness.ENDPOINT_BY_KEY["mp-minilm-int8-batched"].engine == "minilm_int8"
    assert harness.ENDPOINT_BY_KEY["mp-torchscript"].server == "modelport-torch"


def test_harness_engines_of_each_family() -> None:
    assert [e.key for e in harness.chosen_engines(harness.FAMILIES)] == [
        "mnist",
        "tabular",
        "minilm",
        "minilm_fp32",
        "minilm_int8",
        "torchscript",
    ]
    fp32, int8 = harness.family_engines("minilm_int8")
    assert (fp32.label, int8.label) == (
        "onnxruntime, fp32 (in-process)",
        "onnxruntime, int8 (in-process)",
    )
    assert int8.batches == (1, 4, 8, 16)
    (torch_engine,) = harness.family_engines("torchscript")
    assert (torch_engine.runtime, torch_engine.filename) == ("torch", "model.pt")
    assert (torch_engine.label, torch_engine.call) == (
        "torch.jit (in-process)",
        "forward(), batch 1",
    )
    assert torch_engine.batches == (1, 8, 32, 64)
    repos = {"modelport": Path("/r/onnx"), "modelport-torch": Path("/r/torch")}
    assert harness.engine_path(repos, torch_engine) == Path("/r/torch/torchscript/1/model.pt")
    assert harness.engine_path(repos, int8) == Path("/r/onnx/minilm_int8/1/model.onnx")


def test_harness_new_requests_match_the_old_ones() -> None:
    protocols = harness.make_protocols(("mnist", "minilm", "minilm_int8", "torchscript"))
    # minilm_int8 sends MiniLM's request, asking for the embedding only.
    int8 = protocols[("minilm_int8", "v2-json")]
    assert int8.body == protocols[("minilm", "v2-json")].body
    assert json.loads(int8.body)["outputs"] == [{"name": "sentence_embedding"}]
    assert int8.outputs == (("sentence_embedding", (1, 384)),)
    # The TorchScript MLP gets mnist's request over REST, and no gRPC form.
    assert sorted(key for family, key in protocols if family == "torchscript") == [
        "tf-json",
        "v2-binary",
        "v2-json",
    ]
    for key in ("v2-json", "v2-binary", "tf-json"):
        assert protocols[("torchscript", key)].body == protocols[("mnist", key)].body
    feeds = harness.engine_feeds("torchscript", 8)
    assert feeds["images"].shape == (8, 784)
    assert np.array_equal(harness.engine_feeds("torchscript", 1)["images"], harness.mnist_input())


def test_harness_minilm_sample_starts_with_the_request() -> None:
    sample = harness.minilm_sample()
    ids = sample["input_ids"]
    assert ids.shape == (8, 128)
    assert ids.dtype == np.int64
    assert np.array_equal(ids[:1], harness.minilm_token_ids())
    assert ((ids >= 1000) & (ids < 30000)).all()
    assert len({row.tobytes() for row in ids}) == 8
    assert np.array_equal(sample["attention_mask"], np.ones_like(ids))
    assert np.array_equal(harness.minilm_sample()["input_ids"], ids)  # seeded


def test_harness_quantizes_as_a_user_would(tmp_path: Path) -> None:
    argv = harness.quantize_argv(
        tmp_path / "fp32.onnx", tmp_path / "sample.npz", tmp_path / "repo" / "minilm_int8" / "1"
    )
    assert Path(argv[0]).name == "modelport"
    assert argv[1:] == [
        "quantize",
        str(tmp_path / "fp32.onnx"),
        "--mode",
        "dynamic-int8",
        "--sample",
        str(tmp_path / "sample.npz"),
        "--min-cosine",
        "0.98",
        "--output",
        str(tmp_path / "repo" / "minilm_int8" / "1"),
        "--quiet",
    ]


def test_harness_fails_with_the_quantize_output(tmp_path: Path) -> None:
    script = tmp_path / "refuse"
    script.write_text("#!/bin/sh\necho 'min cosine 0.93 < 0.98: REFUSED'\nexit 1\n")
    script.chmod(0o755)
    with pytest.raises(harness.BenchError, match=r"exited with 1:\nmin cosine 0.93 < 0.98"):
        harness.quantize([str(script), "quantize"])
    harness.quantize(["true"])  # a passing gate says nothing


QUANTIZE_REPORT = {
    "passed": True,
    "source": {"size_bytes": 90283172},
    "result": {"size_bytes": 23414316},
    "tolerance": {"atol": 0.1, "rtol": 0.1, "min_agreement": 0.9, "min_cosine": 0.98},
    "samples": {
        "inputs": {"input_ids": {"shape": [8, 128]}, "attention_mask": {"shape": [8, 128]}}
    },
    "outputs": [
        {"name": "sentence_embedding", "min_cosine": 0.9849},
        {"name": "other", "min_cosine": None},
    ],
}


def test_harness_reads_the_gate_report() -> None:
    gate = harness.gate_summary(QUANTIZE_REPORT)
    assert gate == harness.GateSummary(0.9849, 0.98, 8, 90283172, 23414316)
    assert harness.gate_text(gate) == (
        "modelport quantize's gate passed with a least cosine similarity of 0.9849 to fp32 over "
        "8 sample rows (0.98 required); 90.3 MB -> 23.4 MB"
    )
    with pytest.raises(harness.BenchError, match="unexpected quantize report"):
        harness.gate_summary({**QUANTIZE_REPORT, "outputs": []})
    with pytest.raises(harness.BenchError, match="unexpected quantize report"):
        harness.gate_summary({"passed": True})


def test_harness_keeps_only_the_embedding_output(tmp_path: Path) -> None:
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [
            helper.make_node("Identity", ["x"], ["last_hidden_state"]),
            helper.make_node("ReduceMean", ["x"], ["sentence_embedding"], keepdims=0, axes=[1]),
        ],
        "two_outputs",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3, 4])],
        [
            helper.make_tensor_value_info("last_hidden_state", TensorProto.FLOAT, ["batch", 3, 4]),
            helper.make_tensor_value_info("sentence_embedding", TensorProto.FLOAT, ["batch", 4]),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    source = tmp_path / "both.onnx"
    onnx.save(model, str(source))
    target = tmp_path / "minilm_fp32" / "1" / "model.onnx"
    harness.embedding_only(source, target)
    session = ort.InferenceSession(str(target), providers=["CPUExecutionProvider"])
    assert [o.name for o in session.get_outputs()] == ["sentence_embedding"]
    x = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    assert np.allclose(session.run(None, {"x": x})[0], x.mean(axis=1))
    del model.graph.output[1:]  # last_hidden_state alone
    onnx.save(model, str(source))
    with pytest.raises(harness.BenchError, match="no output 'sentence_embedding'"):
        harness.embedding_only(source, tmp_path / "none.onnx")


def test_harness_serves_minilm_builds_with_minilm_config(tmp_path: Path) -> None:
    from modelport.model_config import load_model_config

    built = {
        "inputs": [{"name": "input_ids", "datatype": "INT64", "shape": [-1, -1]}],
        "warmup": {"batch_size": 1},
        "dynamic_batching": {"max_batch_size": 8, "pad_variable_length_inputs": True},
    }
    repo = tmp_path / "models"
    int8 = repo / "minilm_int8" / "1" / "model.onnx"
    int8.parent.mkdir(parents=True)
    int8.write_bytes(b"int8")  # written in place by modelport quantize --output
    harness.write_minilm_models(repo, "minilm_int8", int8, built, "int8")
    assert (repo / "minilm_int8_batched" / "1" / "model.onnx").read_bytes() == b"int8"
    unbatched = load_model_config(repo / "minilm_int8" / "config.yaml")
    batched = load_model_config(repo / "minilm_int8_batched" / "config.yaml")
    assert unbatched.dynamic_batching is None
    assert batched.dynamic_batching is not None
    assert batched.dynamic_batching.max_batch_size == harness.MINILM_MAX_BATCH
    assert batched.dynamic_batching.pad_variable_length_inputs
    assert [i.name for i in unbatched.inputs] == [i.name for i in batched.inputs] == ["input_ids"]
    assert (repo / "minilm_int8" / "config.yaml").read_text().startswith("# int8; ")


@pytest.mark.filterwarnings("ignore:`torch\\.jit\\.:DeprecationWarning")  # in modelport's load
def test_harness_builds_a_torchscript_model_modelport_serves(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    from modelport.lifecycle.loader import runtime_options
    from modelport.model_config import load_model_config
    from modelport.runtimes.torchscript import TorchScriptRuntime

    harness.build_torchscript(tmp_path)
    folder = tmp_path / "torchscript"
    config = load_model_config(folder / "config.yaml")
    assert [(t.name, t.datatype, t.shape) for t in (*config.inputs, *config.outputs)] == [
        ("images", "FP32", [-1, 784]),
        ("scores", "FP32", [-1, 10]),
    ]
    assert config.dynamic_batching is None
    model = folder / "1" / "model.pt"
    runtime = TorchScriptRuntime.load(model, runtime_options(config))
    x = harness.engine_feeds("torchscript", 8)["images"]
    scores = runtime.infer({"images": x}, ["scores"])["scores"]
    assert scores.shape == (8, 10)
    assert scores.dtype == np.float32
    assert np.allclose(scores.sum(axis=1), 1.0, atol=1e-5)  # softmax
    # The raw engine probe runs the same file, and reports every batch size.
    with harness.torch_calls(str(model)) as bind:
        again = bind({"images": x})()
    assert np.allclose(again.numpy(), scores)
    probe = harness.engine_probe("torchscript", str(model), 20, 0.01, runtime="torch")
    assert set(probe) == {"p50_us", "p99_us", "mean_us", "rows_per_s"}
    assert sorted(probe["rows_per_s"], key=int) == ["1", "8", "32", "64"]
    # Seeded: the same weights on every build.
    harness.build_torchscript(tmp_path / "again")
    weights = harness.import_torch().jit.load(str(model)).state_dict()
    rebuilt = harness.import_torch().jit.load(
        str(tmp_path / "again" / "torchscript" / "1" / "model.pt")
    )
    assert {k: v.tolist() for k, v in rebuilt.state_dict().items()} == {
        k: v.tolist() for k, v in weights.items()
    }


def engine_result(p50: float, batch1: float, best: float) -> Any:
    return harness.EngineResult(
        p50_us=p50, p99_us=2 * p50, mean_us=p50, rows_per_s={1: batch1, 4: best, 8: best / 2}
    )


def run_at(rps: float, p50: float) -> Any:
    return harness.LoadResult(
        requests_per_s=rps, p50_us=p50, p99_us=2 * p50, non_2xx=0, socket_errors=0
    )


def int8_measurements() -> Any:
    """Two rounds of minilm_int8 and torchscript cells and engines, with round numbers."""
    results = {}
    for variant, scale in (("fp32", 1.0), ("int8", 2.0)):
        for suffix in ("", "-batched"):
            key = f"mp-minilm-{variant}{suffix}"
            results[(key, "v2-json", 1)] = [run_at(40 * scale, 25000 / scale)] * 2
            results[(key, "v2-json", 16)] = [run_at(36 * scale, 400000 / scale)] * 2
    for protocol in ("v2-json", "v2-binary", "tf-json"):
        results[("mp-torchscript", protocol, 1)] = [run_at(2500, 400.0)] * 2
        results[("mp-torchscript", protocol, 16)] = [run_at(5000, 3000.0), run_at(6000, 3000.0)]
    engines = {
        "minilm_fp32": [engine_result(24000.0, 40.0, 44.0)] * 2,
        "minilm_int8": [engine_result(12000.0, 80.0, 88.0)] * 2,
        "torchscript": [engine_result(16.0, 50000.0, 400000.0)] * 2,
    }
    gate = harness.GateSummary(0.9849, 0.98, 8, 90_300_000, 23_400_000)
    return harness.Measurements(results, engines, gate)


def median_engines(measurements: Any) -> dict[str, Any]:
    return {key: harness.median_engine(runs) for key, runs in measurements.engines.items()}


def test_harness_compares_each_build_with_its_own_engine() -> None:
    assert harness.family_reference("mnist") == "floor echo"
    assert harness.family_reference("minilm_int8") == "raw best rows/s"
    assert harness.family_reference("torchscript") == "raw batch-1 rows/s"
    measurements = int8_measurements()
    cells = harness.aggregate(measurements)
    # Each build against its own engine's best rows/s.
    assert cells[("mp-minilm-fp32", "v2-json", 16)].ratio == pytest.approx(36 / 44)
    assert cells[("mp-minilm-int8", "v2-json", 16)].ratio == pytest.approx(72 / 88)
    # The TorchScript server against the engine's batch-1 rows/s: the median of 0.10 and 0.12.
    assert cells[("mp-torchscript", "v2-json", 16)].ratio == pytest.approx(0.11)
    assert cells[("mp-torchscript", "v2-binary", 1)].vs_json == pytest.approx(1.0)
    engines = median_engines(measurements)
    families = ("minilm_int8", "torchscript")
    groups = harness.plan(families)
    protocols = harness.make_protocols(families)
    rows = harness.family_rows("torchscript", groups, protocols, cells, engines)
    assert len(rows) == 1 + 6
    assert rows[0][:2] == ["torch.jit (in-process)", "forward(), batch 1"]
    assert rows[0][7] == "1.25x"  # 1 / mean call time, over the batch-1 rows/s
    assert rows[1][:3] == ["modelport", "V2 JSON", "1"]
    assert rows[1][6] == "384 us"  # overhead: 400 us - 16 us
    assert harness.table_headers("torchscript")[7] == "ratio to raw batch-1 rows/s"
    minilm = harness.family_rows("minilm_int8", groups, protocols, cells, engines)
    assert [row[0] for row in minilm[:2]] == [
        "onnxruntime, fp32 (in-process)",
        "onnxruntime, int8 (in-process)",
    ]
    overheads = {row[0]: row[6] for row in minilm[2:6]}
    assert overheads["modelport, fp32"] == "1.00 ms"  # 25 ms - 24 ms
    assert overheads["modelport, int8"] == "500 us"  # 12.5 ms - 12 ms


def test_harness_engine_summary() -> None:
    measurements = int8_measurements()
    cells = harness.aggregate(measurements)
    groups = harness.plan(harness.FAMILIES, perf_analyzer=False)
    protocols = harness.make_protocols(harness.FAMILIES)
    rows = harness.summary_rows(
        groups, protocols, measurements, cells, median_engines(measurements)
    )
    assert len(rows[0]) == len(harness.SUMMARY_HEADERS) == len(harness.SUMMARY_ALIGN)
    assert [row[:3] for row in rows] == [
        ["MiniLM fp32", "modelport", "V2 JSON"],
        ["MiniLM fp32", "modelport + batching", "V2 JSON"],
        ["MiniLM int8", "modelport", "V2 JSON"],
        ["MiniLM int8", "modelport + batching", "V2 JSON"],
        ["TorchScript MLP", "modelport", "V2 JSON"],
        ["TorchScript MLP", "modelport", "V2 binary"],
        ["TorchScript MLP", "modelport", "TF JSON"],
    ]
    assert rows[2][3:] == [
        "12.50 ms",  # p50 at concurrency 1
        "12.00 ms",  # the engine's batch-1 p50
        "1.04x",
        "72.0",  # requests/s at concurrency 16
        "80.0",  # the engine's batch-1 rows/s
        "0.90x",
        "88.0 (4)",  # the engine's best rows/s, and at which batch size
    ]
    assert rows[4][3:] == ["400 us", "16.0 us", "25.00x", "5500", "50000", "0.11x", "400000 (4)"]


def test_harness_int8_next_to_fp32() -> None:
    measurements = int8_measurements()
    assert harness.int8_rows(measurements, measurements.gate) == [
        ["raw engine p50, batch 1", "24.00 ms", "12.00 ms", "0.50x"],
        ["raw engine rows/s, batch 1", "40.0", "80.0", "2.00x"],
        ["raw engine best rows/s", "44.0", "88.0", "2.00x"],
        ["modelport p50, c=1", "25.00 ms", "12.50 ms", "0.50x"],
        ["modelport requests/s, c=16", "36.0", "72.0", "2.00x"],
        ["modelport + batching p50, c=1", "25.00 ms", "12.50 ms", "0.50x"],
        ["modelport + batching requests/s, c=16", "36.0", "72.0", "2.00x"],
        ["model file", "90.3 MB", "23.4 MB", "0.26x"],
    ]
    text = harness.int8_markdown(measurements)
    assert "least cosine similarity of 0.9849" in text
    assert "| model file | 90.3 MB | 23.4 MB | 0.26x |" in text
    # Rows for cells a run did not measure are left out.
    unbatched = harness.Measurements(
        {key: runs for key, runs in measurements.results.items() if "batched" not in key[0]},
        measurements.engines,
    )
    assert [row[0] for row in harness.int8_rows(unbatched, None)] == [
        "raw engine p50, batch 1",
        "raw engine rows/s, batch 1",
        "raw engine best rows/s",
        "modelport p50, c=1",
        "modelport requests/s, c=16",
    ]


def test_harness_report_sections_for_the_new_families() -> None:
    measurements = int8_measurements()
    engines = median_engines(measurements)
    section = harness.Section(
        "minilm_int8",
        "| table |",
        tuple((spec, engines[spec.key]) for spec in harness.family_engines("minilm_int8")),
        harness.int8_markdown(measurements),
    )
    text = "\n".join(harness.section_markdown(section))
    assert text.startswith("## MiniLM fp32 and int8 (sentence_embedding only)\n")
    assert "--min-cosine 0.98" in text
    assert "Raw engine throughput by batch size (MiniLM int8; onnxruntime" in text
    assert "### int8 next to fp32" in text
    (spec,) = harness.family_engines("torchscript")
    torch_section = harness.Section("torchscript", "| t |", ((spec, engines["torchscript"]),))
    torch_text = "\n".join(harness.section_markdown(torch_section))
    assert "(TorchScript MLP; torch.jit.load, forward() under torch.inference_mode()" in torch_text
    assert "`torch.set_num_threads(1)`" in torch_text


def test_harness_serves_torchscript_from_a_second_modelport(tmp_path: Path) -> None:
    repos = {"modelport": tmp_path / "models", "modelport-torch": tmp_path / "models-torch"}
    (repos["modelport"] / "minilm_int8" / "1").mkdir(parents=True)
    (repos["modelport-torch"] / "torchscript" / "1").mkdir(parents=True)
    settings = harness.Settings(
        duration_s=1,
        rounds=1,
        warmup_s=1,
        calls=2000,
        families=("minilm_int8", "torchscript"),
        floor=harness.DEFAULT_FLOOR,
        output=None,
        quick=True,
    )
    specs = harness.make_servers(settings, repos)
    # Two modelport processes, and no floor server for these families.
    assert [(s.key, s.label) for s in specs] == [
        ("modelport", "modelport"),
        ("modelport-torch", "modelport (TorchScript)"),
    ]
    assert str(repos["modelport-torch"]) in specs[1].argv
    assert specs[1].ready_paths == ("/v2/health/ready", "/v2/models/torchscript/ready")
    assert harness.cell_duration_text(settings) == "1 s per cell (2 s for MiniLM)"
    assert harness.reproduce_command(settings) == (
        ".venv/bin/python benchmarks/run.py --quick --models minilm_int8,torchscript"
    )
    full = dataclasses.replace(settings, quick=False, duration_s=4, rounds=3)
    assert harness.estimate_minutes(settings) < harness.estimate_minutes(full)
