"""Benchmark modelport against the raw engine and the reference floor server.

    .venv/bin/python benchmarks/run.py [--duration 4] [--rounds 3]
                                       [--models mnist,tabular,minilm,minilm_int8,torchscript]
                                       [--quick] [--output docs/benchmarks.md]

One run on this machine builds a benchmark model repository in a temporary folder and measures,
for batch-1 requests:

- ``mnist`` (784 float32 in, 10 scores out), served by modelport without dynamic batching
  (``mnist``) and with it (``mnist_batched``), over KServe V2 JSON, V2 binary, V2 gRPC, TF
  Serving JSON and TF Serving gRPC, next to the reference floor server (``floor_server.py``) in
  ``echo`` mode (the cheapest Python JSON endpoint) and ``ort`` mode (a naive server running
  onnxruntime per request);
- ``tabular`` (two inputs of two dtypes, two outputs), served by modelport over V2 JSON, V2
  binary, V2 gRPC and TF Serving JSON, next to the floor server's ``echo`` mode;
- all-MiniLM-L6-v2 (128 token ids in, a 384-wide sentence embedding out), served by modelport
  without dynamic batching (``minilm``) and with it (``minilm_batched``), over V2 JSON;
- ``minilm_int8``: the same encoder answering only ``sentence_embedding``, in fp32
  (``minilm_fp32``) and quantized to int8 by ``modelport quantize --mode dynamic-int8`` behind
  its cosine-similarity gate (``minilm_int8``), each without and with batching, over V2 JSON;
- ``torchscript``: an MLP shaped like mnist's, traced with ``torch.jit.trace`` and served by
  modelport's TorchScript runtime (``torchscript``), over V2 JSON, V2 binary and TF Serving JSON;
- the raw engine for each model, pinned to CPU 0 with one intra-op thread: onnxruntime's
  ``session.run`` in-process, or for TorchScript ``torch.jit.load`` and forward() under
  ``torch.inference_mode()``; the p50/p99 of a batch-1 call and rows/s by batch size.

One modelport process serves the ONNX models; a second one serves the TorchScript model, so the
ONNX rows' server never imports PyTorch. Every server is pinned to CPU 0 and the load
generator to CPU 1: ``wrk`` for HTTP, Triton's ``perf_analyzer`` (``make tools``) for gRPC, and
perf_analyzer again over HTTP on mnist as a cross-check of wrk's figures. Servers run side by side
and are measured round-robin, ``--rounds`` times; each cell reports the median of its rounds.
The tables, and the targets computed from them, are printed and written, with the machine and
the command, to ``--output``.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import dataclasses
import datetime as dt
import importlib.metadata
import importlib.util
import io
import json
import math
import os
import platform
import re
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any, TypeVar

import httpx
import numpy as np
import numpy.typing as npt
import yaml

ROOT = Path(__file__).resolve().parent.parent
LUA_SCRIPT = Path("benchmarks/post.lua")
BUILD_MODELS = Path("examples/build_models.py")
BUILD_MINILM = Path("examples/build_minilm.py")
#: The reference floor server sits in shared/bench/, beside the repository's root folder.
DEFAULT_FLOOR = Path(
    os.environ.get("MODELPORT_FLOOR_SERVER", ROOT.parent / "shared" / "bench" / "floor_server.py")
)
DEFAULT_OUTPUT = Path("docs/benchmarks.md")
#: perf_analyzer as ``make tools`` installs it: a wrapper that finds the libraries it links.
DEFAULT_PERF_ANALYZER = Path(
    os.environ.get("MODELPORT_PERF_ANALYZER", ROOT / ".tools" / "perf_analyzer" / "perf_analyzer")
)

SERVER_CPU = "0"
LOAD_CPU = "1"
SEED = 0

MNIST = "mnist"
TABULAR = "tabular"
MINILM = "minilm"
MINILM_INT8 = "minilm_int8"
TORCHSCRIPT = "torchscript"
FAMILIES = (MNIST, TABULAR, MINILM, MINILM_INT8, TORCHSCRIPT)
FAMILY_TITLES = {  # section headings
    MNIST: "mnist",
    TABULAR: "tabular (two inputs, two outputs)",
    MINILM: "MiniLM (all-MiniLM-L6-v2)",
    MINILM_INT8: "MiniLM fp32 and int8 (sentence_embedding only)",
    TORCHSCRIPT: "TorchScript (an mnist-shaped MLP)",
}
#: Families whose rows are compared with the floor server's echo endpoint.
FLOOR_FAMILIES = (MNIST, TABULAR)
#: Families of MiniLM requests: V2 JSON only, cells twice as long, ratios to the raw best rows/s.
MINILM_FAMILIES = (MINILM, MINILM_INT8)
#: What a family's "ratio" column compares requests/s with.
FLOOR_REFERENCE = "floor echo"
BEST_REFERENCE = "raw best rows/s"
BATCH1_REFERENCE = "raw batch-1 rows/s"

#: The two modelport processes: ONNX models, and the TorchScript model (which imports PyTorch).
MODELPORT = "modelport"
MODELPORT_TORCH = "modelport-torch"
#: The raw engines a probe can run.
ONNXRUNTIME = "onnxruntime"
TORCH = "torch"

#: The load generators, and the server port each request form goes to.
WRK = "wrk"
PERF_ANALYZER = "perf_analyzer"
HTTP = "http"
GRPC = "grpc"

MNIST_FEATURES = 784
MNIST_CLASSES = 10
#: The mnist weights the benchmark serves: version 2 of examples/build_models.py's output.
MNIST_SOURCE = Path("mnist") / "2" / "model.onnx"
MNIST_BATCHING = {"max_batch_size": 64, "max_queue_delay_us": 2000}
MNIST_OUTPUTS = (("scores", (1, MNIST_CLASSES)),)

TABULAR_FEATURES = 4
TABULAR_CATEGORIES = 3  # the request's category id is drawn from [0, 3)
#: The tabular model the benchmark serves: examples/build_models.py's, as it is.
TABULAR_SOURCE = Path("tabular") / "1" / "model.onnx"
TABULAR_OUTPUTS = (("probabilities", (1, 3)), ("score", (1, 1)))

MINILM_SEQ_LEN = 128
MINILM_TOKEN_LOW = 1000
MINILM_TOKEN_HIGH = 30000  # exclusive
MINILM_HIDDEN = 384
MINILM_MAX_BATCH = 4  # the batch size onnxruntime runs fastest per row on one CPU (measured)
MINILM_OUTPUT = "sentence_embedding"
MINILM_OUTPUTS = ((MINILM_OUTPUT, (1, MINILM_HIDDEN)),)

#: The fp32 model minilm_int8 compares with: build_minilm.py's, answering sentence_embedding only.
MINILM_FP32_MODEL = "minilm_fp32"
MINILM_INT8_MODEL = "minilm_int8"
#: modelport quantize's gate for the int8 model, as examples/minilm uses it.
MINILM_MIN_COSINE = 0.98
#: Rows of the quantize sample: the request's row, then rows drawn alike with the next seed.
MINILM_SAMPLE_ROWS = 8
QUANTIZE_TIMEOUT_S = 900

#: The TorchScript MLP: mnist's shape (784 -> 128, ReLU -> 10, softmax), seeded weights.
TORCHSCRIPT_MODEL = "torchscript"
TORCHSCRIPT_HIDDEN = 128
TORCHSCRIPT_FILE = "model.pt"

MNIST_CONCURRENCIES = (1, 8, 32, 64)
TF_CONCURRENCIES = (1, 32)
GRPC_CONCURRENCIES = (1, 32)  # also perf_analyzer's HTTP cross-check cells
TABULAR_CONCURRENCIES = (1, 32)
MINILM_CONCURRENCIES = (1, 8, 16, 32)
#: Latency (one request in flight) and throughput (the server saturated), for the engine summary.
LATENCY_CONCURRENCY = 1
THROUGHPUT_CONCURRENCY = 16
MINILM_INT8_CONCURRENCIES = (LATENCY_CONCURRENCY, THROUGHPUT_CONCURRENCY)
TORCHSCRIPT_CONCURRENCIES = (LATENCY_CONCURRENCY, THROUGHPUT_CONCURRENCY)
#: MiniLM cells run this many times --duration: at ~60 requests/s, and with batching answers
#: arriving 16 at a time, a short cell's requests/s would be coarse.
MINILM_DURATION_FACTOR = 2
MLP_BATCHES = (1, 8, 32, 64)
MINILM_BATCHES = (1, 4, 8, 16)

READY_TIMEOUT_S = 120.0
IDLE_TIMEOUT_S = 10.0
IDLE_POLL_S = 0.1
STOP_TIMEOUT_S = 15.0
WRK_TIMEOUT = "10s"  # a MiniLM request at concurrency 32 waits ~0.5 s; wrk's default is 2 s

#: perf_analyzer measures in count windows (time windows proved unreliable on this machine): it
#: repeats windows of at least N requests until 3 in a row agree within PA_STABILITY_PERCENT, and
#: reports those 3. N is chosen per cell so that 3 windows last about --duration, from the
#: requests/s of a short calibration run of PA_CALIBRATION_REQUESTS a window.
PA_WINDOWS = 3
PA_STABILITY_PERCENT = 100
PA_MIN_WINDOW_REQUESTS = 100
PA_CALIBRATION_REQUESTS = 300
PA_TIMEOUT_S = 600
MAKE_TOOLS_HINT = "run `make tools`"

DEFAULT_DURATION_S = 4
DEFAULT_ROUNDS = 3
DEFAULT_WARMUP_S = 1
DEFAULT_CALLS = 20000
QUICK_DURATION_S = 1
QUICK_ROUNDS = 1
QUICK_CALLS = 2000

# The targets the report checks (see benchmarks/README.md).
TARGET_MNIST_RPS = 12000.0
TARGET_MNIST_RATIO = 0.65
TARGET_LATENCY_GAP_US = 100.0
TARGET_MINILM_FRACTION = 0.95
TARGET_GRPC_SPEEDUP = 1.5
BINARY_GOAL = "binary > JSON (> 1.00x)"
GRPC_GOAL = f"gRPC >= {TARGET_GRPC_SPEEDUP:.2f}x JSON"

CellKey = tuple[str, str, int]  # (endpoint key, protocol key, concurrency)
Outputs = tuple[tuple[str, tuple[int, ...]], ...]  # (output name, batch-1 shape), in order
LoadAverage = tuple[float, float, float]
Array = npt.NDArray[Any]
T = TypeVar("T")


class BenchError(RuntimeError):
    """A benchmark step failed in a way that makes the tables meaningless."""


# --------------------------------------------------------------------------- data model


@dataclass(frozen=True)
class Protocol:
    """One way of sending one model family's batch-1 request, and the tool that sends it.

    wrk posts ``body`` to ``path_template``; perf_analyzer builds its own requests from the
    family's input files, with ``pa_options`` choosing the protocol. An HTTP form sent by
    perf_analyzer keeps the body of the same form sent by wrk, to check the server's answer.
    """

    family: str
    key: str
    label: str
    path_template: str  # with {model}; empty for gRPC
    content_type: str
    body: bytes
    outputs: Outputs  # the outputs the answer must carry, and their shapes
    header_length: int | None = None
    client: str = WRK
    transport: str = HTTP
    pa_options: tuple[str, ...] = ()

    def path(self, model: str) -> str:
        """The request path for ``model``."""
        return self.path_template.format(model=model)


@dataclass(frozen=True)
class Engine:
    """A raw engine probe: one model file run in-process, the reference for that model's rows."""

    key: str  # the model's folder in its server's repository; version 1 is loaded
    family: str
    name: str  # in running text and the engine summary
    runtime: str = ONNXRUNTIME  # or TORCH
    server: str = MODELPORT  # whose repository holds the file
    batches: tuple[int, ...] = MLP_BATCHES  # rows/s are measured at these batch sizes
    variant: str = ""  # told apart from the family's other engine in its rows, e.g. "int8"

    @property
    def filename(self) -> str:
        """The model file in the version folder."""
        return TORCHSCRIPT_FILE if self.runtime == TORCH else "model.onnx"

    @property
    def label(self) -> str:
        """The engine row's server column."""
        library = "torch.jit" if self.runtime == TORCH else "onnxruntime"
        return f"{library}{f', {self.variant}' if self.variant else ''} (in-process)"

    @property
    def call(self) -> str:
        """The engine row's protocol column."""
        return ("forward()" if self.runtime == TORCH else "session.run") + ", batch 1"

    @property
    def description(self) -> str:
        """How the probe runs, for the batch-size table's caption."""
        if self.runtime == TORCH:
            return "torch.jit.load, forward() under torch.inference_mode(), one thread"
        return "onnxruntime, one intra-op thread"


ENGINES = (
    Engine(MNIST, MNIST, "mnist"),
    Engine(TABULAR, TABULAR, "tabular"),
    Engine(MINILM, MINILM, "MiniLM", batches=MINILM_BATCHES),
    Engine(MINILM_FP32_MODEL, MINILM_INT8, "MiniLM fp32", batches=MINILM_BATCHES, variant="fp32"),
    Engine(MINILM_INT8_MODEL, MINILM_INT8, "MiniLM int8", batches=MINILM_BATCHES, variant="int8"),
    Engine(
        TORCHSCRIPT_MODEL, TORCHSCRIPT, "TorchScript MLP", runtime=TORCH, server=MODELPORT_TORCH
    ),
)
ENGINE_BY_KEY = {engine.key: engine for engine in ENGINES}


def family_engines(family: str) -> list[Engine]:
    """The raw engines a family's rows are compared with, in table order."""
    return [engine for engine in ENGINES if engine.family == family]


def chosen_engines(families: Sequence[str]) -> list[Engine]:
    """The raw engines of the chosen families, in table order."""
    return [engine for family in families for engine in family_engines(family)]


@dataclass(frozen=True)
class Endpoint:
    """A model as served by one server: what a table row measures."""

    key: str
    label: str
    server: str  # ServerSpec key
    family: str
    model: str  # the model name in request paths
    runs_model: bool
    engine: str  # the key of the raw engine its rows are compared with


ENDPOINTS = (
    Endpoint("mp-mnist", "modelport", MODELPORT, MNIST, "mnist", True, MNIST),
    Endpoint(
        "mp-mnist-batched",
        "modelport + batching",
        MODELPORT,
        MNIST,
        "mnist_batched",
        runs_model=True,
        engine=MNIST,
    ),
    Endpoint("floor-ort", "floor (ort)", "floor-ort", MNIST, "mnist", True, MNIST),
    Endpoint("floor-echo", "floor (echo)", "floor-echo", MNIST, "mnist", False, MNIST),
    Endpoint("mp-tabular", "modelport", MODELPORT, TABULAR, "tabular", True, TABULAR),
    Endpoint(
        "floor-echo-tabular", "floor (echo)", "floor-echo", TABULAR, "tabular", False, TABULAR
    ),
    Endpoint("mp-minilm", "modelport", MODELPORT, MINILM, "minilm", True, MINILM),
    Endpoint(
        "mp-minilm-batched",
        "modelport + batching",
        MODELPORT,
        MINILM,
        "minilm_batched",
        runs_model=True,
        engine=MINILM,
    ),
    *(
        Endpoint(
            f"mp-{model}{suffix}".replace("_", "-"),
            f"{label}, {variant}",
            MODELPORT,
            MINILM_INT8,
            model + suffix,
            runs_model=True,
            engine=model,
        )
        for model, variant in ((MINILM_FP32_MODEL, "fp32"), (MINILM_INT8_MODEL, "int8"))
        for suffix, label in (("", "modelport"), ("_batched", "modelport + batching"))
    ),
    Endpoint(
        "mp-torchscript",
        "modelport",
        MODELPORT_TORCH,
        TORCHSCRIPT,
        TORCHSCRIPT_MODEL,
        runs_model=True,
        engine=TORCHSCRIPT_MODEL,
    ),
)
ENDPOINT_BY_KEY = {endpoint.key: endpoint for endpoint in ENDPOINTS}


@dataclass(frozen=True)
class Group:
    """Endpoints measured back to back with one protocol at one concurrency."""

    family: str
    protocol: str
    concurrency: int
    endpoints: tuple[str, ...]  # endpoint keys, in table order
    cross_check: bool = False  # shown in the load generator cross-check, not the family table


@dataclass(frozen=True)
class ServerSpec:
    """A server to start: its name, its command (without taskset) and its readiness checks."""

    key: str
    label: str
    argv: tuple[str, ...]
    port_flag: str
    ready_paths: tuple[str, ...]
    grpc_port_flag: str | None = None  # servers that also listen for gRPC


@dataclass
class RunningServer:
    """A started server process and where to reach it."""

    spec: ServerSpec
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path
    grpc_port: int | None = None

    @property
    def base_url(self) -> str:
        """The server's root URL."""
        return f"http://127.0.0.1:{self.port}"

    def address(self, transport: str) -> str:
        """``host:port`` of the server's HTTP or gRPC listener."""
        port = self.grpc_port if transport == GRPC else self.port
        if port is None:
            raise BenchError(f"{self.spec.label} has no {transport} listener")
        return f"127.0.0.1:{port}"


@dataclass(frozen=True)
class LoadResult:
    """What one wrk or perf_analyzer run reported."""

    requests_per_s: float
    p50_us: float
    p99_us: float
    non_2xx: int
    socket_errors: int
    foreign_cpu: float = 0.0  # share of CPU 0's time spent outside the measured server


@dataclass(frozen=True)
class EngineResult:
    """The raw engine's figures for one model, from one in-process measurement."""

    p50_us: float
    p99_us: float
    mean_us: float
    rows_per_s: dict[int, float]

    @property
    def best_batch(self) -> int:
        """The batch size with the most rows/s."""
        return max(self.rows_per_s, key=lambda batch: self.rows_per_s[batch])

    @property
    def best_rows_per_s(self) -> float:
        """Rows/s at the best batch size."""
        return self.rows_per_s[self.best_batch]


@dataclass(frozen=True)
class Cell:
    """The median over rounds of one (endpoint, protocol, concurrency) cell."""

    requests_per_s: float
    p50_us: float
    p99_us: float
    rps_min: float
    rps_max: float
    errors: int
    ratio: float | None  # median over rounds of requests/s / the reference in the same round
    vs_json: float | None = None  # the same, with the same endpoint's V2 JSON cell as reference


@dataclass(frozen=True)
class Settings:
    """What the command line asked for."""

    duration_s: int
    rounds: int
    warmup_s: int
    calls: int
    families: tuple[str, ...]
    floor: Path
    output: Path | None
    quick: bool
    perf_analyzer: Path | None = None  # None: gRPC and perf_analyzer cells are skipped
    perf_analyzer_note: str = ""  # why they are skipped

    def cell_seconds(self, family: str) -> int:
        """How long one cell of ``family`` runs."""
        return self.duration_s * (MINILM_DURATION_FACTOR if family in MINILM_FAMILIES else 1)


@dataclass(frozen=True)
class GateSummary:
    """What ``modelport quantize`` reported on the int8 MiniLM model (its report.json)."""

    min_cosine: float  # the least cosine similarity of any sample row's output with fp32's
    required: float
    rows: int  # sample rows compared
    source_bytes: int
    result_bytes: int


@dataclass(frozen=True)
class Measurements:
    """Everything one run measured: every load generator run and engine probe, by round."""

    results: dict[CellKey, list[LoadResult]]
    engines: dict[str, list[EngineResult]]  # by engine key
    gate: GateSummary | None = None  # when minilm_int8 was built


@dataclass(frozen=True)
class TargetResult:
    """One target, checked against this run's figures."""

    name: str
    measured: str
    goal: str
    met: bool | None  # None: not measured in this run


# --------------------------------------------------------------------------- requests


def mnist_input() -> Array:
    """The fixed batch-1 mnist input: 784 random float32 in [0, 1)."""
    return np.random.default_rng(SEED).random((1, MNIST_FEATURES), dtype=np.float32)


def tabular_inputs() -> dict[str, Array]:
    """The fixed batch-1 tabular input: 4 random float32 in [0, 1) and a category id in [0, 3)."""
    rng = np.random.default_rng(SEED)
    features = rng.random((1, TABULAR_FEATURES), dtype=np.float32)
    category = rng.integers(0, TABULAR_CATEGORIES, (1, 1), dtype=np.int64)
    return {"features": features, "category": category}


def minilm_token_ids() -> Array:
    """The fixed batch-1 MiniLM input: 128 random token ids in [1000, 30000), INT64."""
    rng = np.random.default_rng(SEED)
    return rng.integers(MINILM_TOKEN_LOW, MINILM_TOKEN_HIGH, (1, MINILM_SEQ_LEN), dtype=np.int64)


def minilm_sample() -> dict[str, Array]:
    """The quantize gate's sample: the request's row, then rows drawn alike with the next seed."""
    rng = np.random.default_rng(SEED + 1)
    more = rng.integers(
        MINILM_TOKEN_LOW,
        MINILM_TOKEN_HIGH,
        (MINILM_SAMPLE_ROWS - 1, MINILM_SEQ_LEN),
        dtype=np.int64,
    )
    ids = np.concatenate([minilm_token_ids(), more])
    return {"input_ids": ids, "attention_mask": np.ones_like(ids)}


def request_inputs(family: str) -> dict[str, Array]:
    """A family's batch-1 request, by input name."""
    if family in (MNIST, TORCHSCRIPT):
        return {"images": mnist_input()}
    if family == TABULAR:
        return tabular_inputs()
    ids = minilm_token_ids()
    return {"input_ids": ids, "attention_mask": np.ones_like(ids)}


V2_DATATYPES = {"float32": "FP32", "int64": "INT64"}


def v2_tensor(name: str, x: Array, datatype: str) -> dict[str, object]:
    """One V2 JSON input tensor holding the single row of ``x``."""
    return {"name": name, "shape": list(x.shape), "datatype": datatype, "data": x[0].tolist()}


def raw_bytes(x: Array) -> bytes:
    """``x``'s values as little-endian bytes, row-major: V2 binary and gRPC raw contents."""
    return np.ascontiguousarray(x, dtype=x.dtype.newbyteorder("<")).tobytes()


def v2_binary_body(inputs: Mapping[str, Array], outputs: Sequence[str]) -> tuple[bytes, int]:
    """A V2 binary-extension request for ``inputs`` and the length of its JSON header."""
    raws = {name: raw_bytes(x) for name, x in inputs.items()}
    header = {
        "inputs": [
            {
                "name": name,
                "shape": list(x.shape),
                "datatype": V2_DATATYPES[x.dtype.name],
                "parameters": {"binary_data_size": len(raws[name])},
            }
            for name, x in inputs.items()
        ],
        "outputs": [{"name": name, "parameters": {"binary_data": True}} for name in outputs],
    }
    header_bytes = json.dumps(header, separators=(",", ":")).encode()
    return header_bytes + b"".join(raws.values()), len(header_bytes)


def tf_instances(inputs: Mapping[str, Array]) -> object:
    """TF Serving's row format: the row itself for one input, else one object of named values."""
    if len(inputs) == 1:
        return next(iter(inputs.values())).tolist()
    return [{name: x[0].tolist() for name, x in inputs.items()}]


def rest_protocols(family: str, inputs: Mapping[str, Array], outputs: Outputs) -> list[Protocol]:
    """V2 JSON, V2 binary and TF Serving JSON forms of a family's request, for wrk."""
    binary, header_length = v2_binary_body(inputs, [name for name, _ in outputs])
    v2_path = "/v2/models/{model}/infer"
    v2_json = json.dumps(
        {"inputs": [v2_tensor(name, x, V2_DATATYPES[x.dtype.name]) for name, x in inputs.items()]}
    ).encode()
    tf_json = json.dumps({"instances": tf_instances(inputs)}).encode()
    octets = "application/octet-stream"
    return [
        Protocol(family, "v2-json", "V2 JSON", v2_path, "application/json", v2_json, outputs),
        Protocol(family, "v2-binary", "V2 binary", v2_path, octets, binary, outputs, header_length),
        Protocol(
            family,
            "tf-json",
            "TF JSON",
            "/v1/models/{model}:predict",
            "application/json",
            tf_json,
            outputs,
        ),
    ]


def grpc_protocols(family: str, inputs: Mapping[str, Array], outputs: Outputs) -> list[Protocol]:
    """V2 gRPC (``raw_input_contents``) and TF Serving gRPC forms, sent by perf_analyzer.

    TF Serving gRPC is left out for inputs other than FP32: perf_analyzer's TF Serving client
    sends INT64 values in ``bool_val``, which the server rightly refuses.
    """
    v2 = Protocol(
        family, "v2-grpc", "V2 gRPC", "", "", b"", outputs,
        client=PERF_ANALYZER, transport=GRPC, pa_options=("-i", "grpc"),
    )  # fmt: skip
    if any(x.dtype != np.float32 for x in inputs.values()):
        return [v2]
    # Its inputs' shapes are dynamic: perf_analyzer needs them spelled out, batch included.
    shapes = [f"--shape={name}:{','.join(map(str, x.shape))}" for name, x in inputs.items()]
    tf = Protocol(
        family, "tf-grpc", "TF gRPC", "", "", b"", outputs,
        client=PERF_ANALYZER, transport=GRPC,
        pa_options=("--service-kind", "tfserving", "-i", "grpc", *shapes),
    )  # fmt: skip
    return [v2, tf]


def cross_check_protocol(binary: Protocol) -> Protocol:
    """V2 binary as perf_analyzer sends it (its default over HTTP), to cross-check wrk."""
    return dataclasses.replace(binary, key="pa-v2-binary", client=PERF_ANALYZER)


def family_protocols(family: str) -> list[Protocol]:
    """Every form of a family's request, in table order."""
    inputs = request_inputs(family)
    if family in MINILM_FAMILIES:
        body = json.dumps(
            {
                "inputs": [v2_tensor(name, x, "INT64") for name, x in inputs.items()],
                "outputs": [{"name": MINILM_OUTPUT}],
            }
        ).encode()
        path = "/v2/models/{model}/infer"
        return [
            Protocol(family, "v2-json", "V2 JSON", path, "application/json", body, MINILM_OUTPUTS)
        ]
    if family == TORCHSCRIPT:  # REST only: no floor server, no perf_analyzer
        return rest_protocols(family, inputs, MNIST_OUTPUTS)
    outputs = MNIST_OUTPUTS if family == MNIST else TABULAR_OUTPUTS
    rest = rest_protocols(family, inputs, outputs)
    extra = [cross_check_protocol(rest[1])] if family == MNIST else []
    return [*rest, *grpc_protocols(family, inputs, outputs), *extra]


def make_protocols(families: Sequence[str]) -> dict[tuple[str, str], Protocol]:
    """Every request form of the chosen families, by (family, protocol key)."""
    protocols = [protocol for family in families for protocol in family_protocols(family)]
    return {(p.family, p.key): p for p in protocols}


def write_bodies(protocols: Mapping[tuple[str, str], Protocol], directory: Path) -> dict[str, Path]:
    """Write each wrk request body to a file; return the paths by ``family-protocol``."""
    paths = {}
    for protocol in protocols.values():
        if protocol.client != WRK:
            continue
        name = f"{protocol.family}-{protocol.key}"
        path = directory / f"{name}.body"
        path.write_bytes(protocol.body)
        paths[name] = path
    return paths


def body_path(bodies: Mapping[str, Path], protocol: Protocol) -> Path:
    """The body file of ``protocol``."""
    return bodies[f"{protocol.family}-{protocol.key}"]


def write_input_data(family: str, directory: Path) -> Path:
    """perf_analyzer's input data for ``family``: a folder of one raw file per input.

    Each file holds the request's single row, as perf_analyzer expects, so it sends the same
    values as wrk's requests. (Its JSON input data is ignored by its TF Serving client.)
    """
    folder = directory / f"{family}-inputs"
    folder.mkdir()
    for name, x in request_inputs(family).items():
        (folder / name).write_bytes(raw_bytes(x[0]))
    return folder


# --------------------------------------------------------------------------- the plan

#: The protocol keys perf_analyzer sends.
PA_PROTOCOLS = frozenset({"v2-grpc", "tf-grpc", "pa-v2-binary"})


def mnist_groups(perf_analyzer: bool) -> list[Group]:
    """mnist's groups: each form at each of its concurrencies, gRPC after the same HTTP ones."""
    groups = []
    both = ("mp-mnist", "mp-mnist-batched")
    for concurrency in MNIST_CONCURRENCIES:
        groups += [
            Group(MNIST, "v2-json", concurrency, (*both, "floor-ort", "floor-echo")),
            Group(MNIST, "v2-binary", concurrency, both),
        ]
        grpc = perf_analyzer and concurrency in GRPC_CONCURRENCIES
        if grpc:
            groups.append(Group(MNIST, "v2-grpc", concurrency, both))
        if concurrency in TF_CONCURRENCIES:
            groups.append(
                Group(MNIST, "tf-json", concurrency, ("mp-mnist", "floor-ort", "floor-echo"))
            )
        if grpc and concurrency in TF_CONCURRENCIES:
            groups.append(Group(MNIST, "tf-grpc", concurrency, ("mp-mnist",)))
        if grpc:
            groups.append(Group(MNIST, "pa-v2-binary", concurrency, both, cross_check=True))
    return groups


def tabular_groups(perf_analyzer: bool) -> list[Group]:
    """tabular's groups: V2 JSON, V2 binary, V2 gRPC and TF JSON at each concurrency."""
    groups = []
    for concurrency in TABULAR_CONCURRENCIES:
        groups += [
            Group(TABULAR, "v2-json", concurrency, ("mp-tabular", "floor-echo-tabular")),
            Group(TABULAR, "v2-binary", concurrency, ("mp-tabular",)),
        ]
        if perf_analyzer and concurrency in GRPC_CONCURRENCIES:
            groups.append(Group(TABULAR, "v2-grpc", concurrency, ("mp-tabular",)))
        groups.append(Group(TABULAR, "tf-json", concurrency, ("mp-tabular", "floor-echo-tabular")))
    return groups


def plan(families: Sequence[str], *, perf_analyzer: bool = True) -> list[Group]:
    """What a round measures, in order: each group's endpoints are measured back to back.

    Without ``perf_analyzer``, the gRPC and perf_analyzer cells are left out.
    """
    groups = []
    if MNIST in families:
        groups += mnist_groups(perf_analyzer)
    if TABULAR in families:
        groups += tabular_groups(perf_analyzer)
    if MINILM in families:
        for concurrency in MINILM_CONCURRENCIES:
            groups.append(Group(MINILM, "v2-json", concurrency, ("mp-minilm", "mp-minilm-batched")))
    if MINILM_INT8 in families:
        keys = tuple(e.key for e in ENDPOINTS if e.family == MINILM_INT8)
        groups += [Group(MINILM_INT8, "v2-json", c, keys) for c in MINILM_INT8_CONCURRENCIES]
    if TORCHSCRIPT in families:
        groups += [
            Group(TORCHSCRIPT, protocol, concurrency, ("mp-torchscript",))
            for concurrency in TORCHSCRIPT_CONCURRENCIES
            for protocol in ("v2-json", "v2-binary", "tf-json")
        ]
    return groups


def settings_plan(settings: Settings) -> list[Group]:
    """The plan for what the command line asked for."""
    return plan(settings.families, perf_analyzer=settings.perf_analyzer is not None)


def cell_count(groups: Sequence[Group]) -> int:
    """How many load generator runs one round makes."""
    return sum(len(group.endpoints) for group in groups)


def uses_perf_analyzer(groups: Sequence[Group]) -> bool:
    """Whether any group is measured with perf_analyzer."""
    return any(group.protocol in PA_PROTOCOLS for group in groups)


# --------------------------------------------------------------------------- preparation


def check_tools() -> None:
    """Exit with an install hint if wrk or taskset is missing."""
    missing = []
    if shutil.which("wrk") is None:
        missing.append("wrk (install it with: apt-get install wrk)")
    if shutil.which("taskset") is None:
        missing.append("taskset (install it with: apt-get install util-linux)")
    if missing:
        raise SystemExit("benchmarks/run.py needs " + " and ".join(missing))
    if len(os.sched_getaffinity(0)) < 2:
        raise SystemExit("benchmarks/run.py needs 2 CPUs: servers on CPU 0, wrk on CPU 1")


def run_builder(argv: Sequence[str]) -> None:
    """Run a model build script, failing with its output if it fails."""
    completed = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=600)
    if completed.returncode != 0:
        raise BenchError(
            f"{shlex.join(argv)} failed ({completed.returncode}):\n"
            + (completed.stdout + completed.stderr).strip()
        )


def write_config(path: Path, comment: str, settings: Mapping[str, Any] | None) -> None:
    """Write a model's ``config.yaml``: a comment, then ``settings`` (if any) as YAML."""
    text = "".join(f"# {line}\n" for line in comment.splitlines())
    if settings:
        text += yaml.safe_dump(dict(settings), sort_keys=False)
    path.write_text(text)


def link_or_copy(source: Path, target: Path) -> None:
    """Hard-link ``source`` to ``target`` (a copy if links are not possible)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


def build_examples(scratch: Path) -> Path:
    """Run examples/build_models.py into ``scratch``; return the folder it built."""
    examples = scratch / "examples"
    if not examples.exists():
        run_builder([sys.executable, str(BUILD_MODELS), str(examples)])
    return examples


def build_mnist(repo: Path, scratch: Path) -> None:
    """``mnist`` (no batching) and ``mnist_batched``: the same weights, version 1 of each."""
    examples = build_examples(scratch)
    for name in ("mnist", "mnist_batched"):
        link_or_copy(examples / MNIST_SOURCE, repo / name / "1" / "model.onnx")
    write_config(
        repo / "mnist" / "config.yaml",
        "The example mnist MLP (examples/build_models.py, version 2's weights); no batching.",
        None,
    )
    write_config(
        repo / "mnist_batched" / "config.yaml",
        "The same model as mnist, with dynamic batching.",
        {"dynamic_batching": MNIST_BATCHING},
    )


def build_tabular(repo: Path, scratch: Path) -> None:
    """``tabular``: the example model, version 1, without batching."""
    link_or_copy(build_examples(scratch) / TABULAR_SOURCE, repo / "tabular" / "1" / "model.onnx")
    write_config(
        repo / "tabular" / "config.yaml",
        "The example tabular model (examples/build_models.py): features FP32 [-1, 4] and\n"
        "category INT64 [-1, 1] in, probabilities FP32 [-1, 3] and score FP32 [-1, 1] out.",
        None,
    )


def minilm_source(scratch: Path) -> tuple[Path, dict[str, Any]]:
    """build_minilm.py's model file and config.yaml settings, built once into ``scratch``."""
    built = scratch / "minilm-build"
    model = built / "minilm" / "1" / "model.onnx"
    if not model.exists():
        run_builder(
            [sys.executable, str(BUILD_MINILM), str(built), "--seq-len", str(MINILM_SEQ_LEN)]
        )
    config = yaml.safe_load((built / "minilm" / "config.yaml").read_text())
    if not isinstance(config, dict) or not isinstance(config.get("dynamic_batching"), dict):
        raise BenchError(f"{BUILD_MINILM} wrote a config.yaml without dynamic_batching")
    return model, config


def minilm_configs(config: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """build_minilm.py's config.yaml without dynamic batching, and with it as the runner sets it."""
    unbatched = {key: value for key, value in config.items() if key != "dynamic_batching"}
    batching = {**config["dynamic_batching"], "max_batch_size": MINILM_MAX_BATCH}
    return unbatched, {**config, "dynamic_batching": batching}


def write_minilm_models(
    repo: Path, name: str, model: Path, config: Mapping[str, Any], what: str
) -> None:
    """``name`` (no batching) and ``name_batched`` (batching), both serving the file ``model``."""
    unbatched, batched = minilm_configs(config)
    for folder in (name, f"{name}_batched"):
        target = repo / folder / "1" / "model.onnx"
        if target != model:
            link_or_copy(model, target)
    write_config(
        repo / name / "config.yaml",
        f"{what}; {BUILD_MINILM}'s config.yaml without dynamic_batching.",
        unbatched,
    )
    write_config(
        repo / f"{name}_batched" / "config.yaml",
        f"{what}; {BUILD_MINILM}'s config.yaml (sequence length {MINILM_SEQ_LEN}), "
        "batching as built.",
        batched,
    )


def build_minilm(repo: Path, scratch: Path) -> None:
    """``minilm`` (build_minilm.py's config without batching) and ``minilm_batched`` (with)."""
    model, config = minilm_source(scratch)
    write_minilm_models(repo, "minilm", model, config, f"{BUILD_MINILM}'s model, both outputs")


def embedding_only(source: Path, target: Path) -> None:
    """Write a copy of the ONNX model ``source`` whose only graph output is the embedding.

    The quantize gate judges every float output with rows; last_hidden_state's rows include
    padding positions, whose states int8 may move further than the embedding's.
    """
    import onnx

    model = onnx.load(str(source))
    kept = [output for output in model.graph.output if output.name == MINILM_OUTPUT]
    if not kept:
        raise BenchError(f"{source} has no output {MINILM_OUTPUT!r}")
    del model.graph.output[:]
    model.graph.output.extend(kept)
    target.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(target))


def quantize_argv(source: Path, sample: Path, output: Path) -> list[str]:
    """``modelport quantize`` to dynamic int8 behind the cosine-similarity gate, as users run it."""
    return [
        str(Path(sys.executable).parent / "modelport"), "quantize", str(source),
        "--mode", "dynamic-int8", "--sample", str(sample),
        "--min-cosine", str(MINILM_MIN_COSINE), "--output", str(output), "--quiet",
    ]  # fmt: skip


def quantize(argv: Sequence[str]) -> None:
    """Run ``modelport quantize``; fail with its output (the gate's table) if it refuses."""
    env = dict(os.environ, COLUMNS="160")  # the gate's tables, unwrapped in an error message
    try:
        completed = subprocess.run(
            argv, capture_output=True, text=True, check=False, timeout=QUANTIZE_TIMEOUT_S, env=env
        )
    except subprocess.TimeoutExpired:
        raise BenchError(f"{shlex.join(argv)} did not finish in {QUANTIZE_TIMEOUT_S}s") from None
    if completed.returncode != 0:
        raise BenchError(
            f"the int8 MiniLM model was not written: {shlex.join(argv)} exited with "
            f"{completed.returncode}:\n" + (completed.stdout + completed.stderr).strip()
        )


def gate_summary(report: Mapping[str, Any]) -> GateSummary:
    """The figures the benchmark reports from ``modelport quantize``'s report.json."""
    try:
        cosines = [
            float(output["min_cosine"])
            for output in report["outputs"]
            if output.get("min_cosine") is not None
        ]
        first = next(iter(report["samples"]["inputs"].values()))
        return GateSummary(
            min_cosine=min(cosines),
            required=float(report["tolerance"]["min_cosine"]),
            rows=int(first["shape"][0]),
            source_bytes=int(report["source"]["size_bytes"]),
            result_bytes=int(report["result"]["size_bytes"]),
        )
    except (KeyError, TypeError, ValueError, StopIteration):
        raise BenchError(f"unexpected quantize report: {json.dumps(report)[:300]}") from None


def build_minilm_int8(repo: Path, scratch: Path) -> GateSummary:
    """``minilm_fp32`` (the embedding only) and ``minilm_int8`` (quantized from it), each also
    ``_batched``, with the same config.yaml as ``minilm``; return what the gate measured."""
    model, config = minilm_source(scratch)
    fp32 = repo / MINILM_FP32_MODEL / "1" / "model.onnx"
    embedding_only(model, fp32)
    sample = scratch / "minilm-sample.npz"
    rows = minilm_sample()
    np.savez(sample, input_ids=rows["input_ids"], attention_mask=rows["attention_mask"])
    int8_dir = repo / MINILM_INT8_MODEL / "1"
    quantize(quantize_argv(fp32, sample, int8_dir))
    what = f"{BUILD_MINILM}'s model answering {MINILM_OUTPUT} only"
    write_minilm_models(repo, MINILM_FP32_MODEL, fp32, config, f"{what}, fp32")
    write_minilm_models(
        repo, MINILM_INT8_MODEL, int8_dir / "model.onnx", config, f"{what}, dynamic int8"
    )
    return gate_summary(json.loads((int8_dir / "report.json").read_text()))


def import_torch() -> Any:
    """PyTorch, imported when a TorchScript model is built or probed (its API is untyped)."""
    return importlib.import_module("torch")


@contextmanager
def torchscript_deprecation_ignored() -> Iterator[None]:
    """PyTorch 2.13 deprecates TorchScript for torch.export (modelport serves both): hush it."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        yield


def torchscript_mlp() -> Any:
    """The TorchScript MLP: mnist's shape with weights from a fixed seed, traced at batch 1."""
    torch = import_torch()
    torch.manual_seed(SEED)
    model = torch.nn.Sequential(
        torch.nn.Linear(MNIST_FEATURES, TORCHSCRIPT_HIDDEN),
        torch.nn.ReLU(),
        torch.nn.Linear(TORCHSCRIPT_HIDDEN, MNIST_CLASSES),
        torch.nn.Softmax(dim=1),
    ).eval()
    with torch.no_grad(), torchscript_deprecation_ignored():
        return torch.jit.trace(model, torch.from_numpy(mnist_input()))


def torchscript_config() -> dict[str, Any]:
    """The TorchScript model's config.yaml: the signature a TorchScript file does not record."""
    return {
        "inputs": [{"name": "images", "datatype": "FP32", "shape": [-1, MNIST_FEATURES]}],
        "outputs": [{"name": "scores", "datatype": "FP32", "shape": [-1, MNIST_CLASSES]}],
    }


def build_torchscript(repo: Path) -> None:
    """``torchscript``: the traced MLP as ``model.pt``, without batching."""
    torch = import_torch()
    path = repo / TORCHSCRIPT_MODEL / "1" / TORCHSCRIPT_FILE
    path.parent.mkdir(parents=True)
    module = torchscript_mlp()
    with torchscript_deprecation_ignored():
        torch.jit.save(module, str(path))
    write_config(
        repo / TORCHSCRIPT_MODEL / "config.yaml",
        f"An MLP shaped like mnist ({MNIST_FEATURES} -> {TORCHSCRIPT_HIDDEN}, ReLU -> "
        f"{MNIST_CLASSES}, softmax), torch.manual_seed({SEED}),\ntraced with torch.jit.trace; "
        "no batching.",
        torchscript_config(),
    )


def build_repository(
    families: Sequence[str], work_dir: Path
) -> tuple[dict[str, Path], GateSummary | None]:
    """Build the benchmark model repositories under ``work_dir``, one per modelport process.

    Returns the repositories that hold models, by server key, and the int8 gate's summary
    (None without minilm_int8).
    """
    repos = {MODELPORT: work_dir / "models", MODELPORT_TORCH: work_dir / "models-torch"}
    for repo in repos.values():
        repo.mkdir()
    onnx_repo = repos[MODELPORT]
    gate = None
    if MNIST in families:
        build_mnist(onnx_repo, work_dir)
    if TABULAR in families:
        build_tabular(onnx_repo, work_dir)
    if MINILM in families:
        build_minilm(onnx_repo, work_dir)
    if MINILM_INT8 in families:
        gate = build_minilm_int8(onnx_repo, work_dir)
    if TORCHSCRIPT in families:
        build_torchscript(repos[MODELPORT_TORCH])
    return {key: repo for key, repo in repos.items() if any(repo.iterdir())}, gate


def engine_path(repos: Mapping[str, Path], engine: Engine) -> Path:
    """The model file ``engine``'s probe (and, for mnist, the floor server) loads."""
    return repos[engine.server] / engine.key / "1" / engine.filename


def modelport_spec(key: str, repo: Path) -> ServerSpec:
    """A modelport process serving ``repo``, ready when every model in it is."""
    modelport = Path(sys.executable).parent / "modelport"
    models = sorted(path.name for path in repo.iterdir() if path.is_dir())
    return ServerSpec(
        key,
        "modelport" if key == MODELPORT else "modelport (TorchScript)",
        (str(modelport), "serve", "--model-repository", str(repo), "--log-level", "warning"),
        "--http-port",
        ("/v2/health/ready", *(f"/v2/models/{model}/ready" for model in models)),
        grpc_port_flag="--grpc-port",
    )


def make_servers(settings: Settings, repos: Mapping[str, Path]) -> list[ServerSpec]:
    """The servers the chosen families need: modelport for each repository, then the floor's."""
    specs = [modelport_spec(key, repo) for key, repo in repos.items()]
    floor = (sys.executable, str(settings.floor))
    if MNIST in settings.families:
        mnist_onnx = str(engine_path(repos, ENGINE_BY_KEY[MNIST]))
        specs.append(
            ServerSpec(
                "floor-ort",
                "floor (ort)",
                (*floor, "--mode", "ort", "--model-path", mnist_onnx),
                "--port",
                ("/v2/health/ready",),
            )
        )
    if any(family in settings.families for family in FLOOR_FAMILIES):
        specs.append(
            ServerSpec(
                "floor-echo",
                "floor (echo)",
                (*floor, "--mode", "echo"),
                "--port",
                ("/v2/health/ready",),
            )
        )
    return specs


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# --------------------------------------------------------------------------- servers


def server_argv(spec: ServerSpec, port: int, grpc_port: int | None = None) -> list[str]:
    """The full command for ``spec`` on ``port`` (and ``grpc_port``), pinned to the server CPU."""
    argv = ["taskset", "-c", SERVER_CPU, *spec.argv, spec.port_flag, str(port)]
    if spec.grpc_port_flag is not None and grpc_port is not None:
        argv += [spec.grpc_port_flag, str(grpc_port)]
    return argv


def log_tail(path: Path, lines: int = 30) -> str:
    """The last ``lines`` lines of a log file."""
    text = path.read_text(errors="replace") if path.exists() else ""
    return "\n".join(text.splitlines()[-lines:])


def wait_ready(server: RunningServer) -> None:
    """Poll the server's readiness paths until each answers 200, or fail with its log."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    pending = list(server.spec.ready_paths)
    while pending and time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise BenchError(
                f"{server.spec.label} exited with {server.process.returncode} while starting:\n"
                + log_tail(server.log_path)
            )
        try:
            if httpx.get(server.base_url + pending[0], timeout=2.0).status_code == 200:
                pending.pop(0)
                continue
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    if pending:
        raise BenchError(
            f"{server.spec.label}: {pending[0]} not ready after {READY_TIMEOUT_S:.0f}s:\n"
            + log_tail(server.log_path)
        )
    if server.grpc_port is not None:
        wait_listening(server, server.grpc_port, deadline)


def wait_listening(server: RunningServer, port: int, deadline: float) -> None:
    """Wait until ``port`` accepts TCP connections, or fail with the server's log."""
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1.0):
            return
        time.sleep(0.2)
    raise BenchError(
        f"{server.spec.label}: gRPC port {port} not listening after {READY_TIMEOUT_S:.0f}s:\n"
        + log_tail(server.log_path)
    )


def stop_server(server: RunningServer) -> None:
    """SIGTERM the server, then SIGKILL it if it has not exited in time."""
    if server.process.poll() is not None:
        return
    server.process.terminate()
    try:
        server.process.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait()


@contextmanager
def running_server(spec: ServerSpec, log_dir: Path) -> Iterator[RunningServer]:
    """Start ``spec`` pinned to the server CPU, wait until ready, and always stop it."""
    port = free_port()
    grpc_port = free_port() if spec.grpc_port_flag is not None else None
    log_path = log_dir / f"{spec.key}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            server_argv(spec, port, grpc_port),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # Ctrl-C reaches only the runner, which stops it
        )
    server = RunningServer(spec, port, process, log_path, grpc_port)
    try:
        started = time.monotonic()
        wait_ready(server)
        ports = f"ports {port} and {grpc_port} (gRPC)" if grpc_port else f"port {port}"
        print(
            f"started {spec.label} on {ports} (pid {process.pid}), ready in "
            f"{time.monotonic() - started:.1f}s",
            file=sys.stderr,
        )
        yield server
    finally:
        stop_server(server)


def ensure_alive(server: RunningServer) -> None:
    """Fail if the server has exited during the benchmark."""
    if server.process.poll() is not None:
        raise BenchError(
            f"{server.spec.label} exited with {server.process.returncode}:\n"
            + log_tail(server.log_path)
        )


def request_headers(protocol: Protocol) -> dict[str, str]:
    """The HTTP headers ``protocol``'s request carries."""
    headers = {"Content-Type": protocol.content_type}
    if protocol.header_length is not None:
        headers["Inference-Header-Content-Length"] = str(protocol.header_length)
    return headers


def check_response(server: RunningServer, endpoint: Endpoint, protocol: Protocol) -> None:
    """Send one request and check the answer, so the benchmark measures real work."""
    if protocol.transport == GRPC:
        check_grpc_response(server, endpoint, protocol)
        return
    url = server.base_url + protocol.path(endpoint.model)
    headers = request_headers(protocol)
    response = httpx.post(url, content=protocol.body, headers=headers, timeout=30.0)
    what = f"{endpoint.label} ({endpoint.model}) {protocol.label}"
    if response.status_code != 200:
        raise BenchError(f"{what}: HTTP {response.status_code}: {response.text[:300]}")
    if endpoint.runs_model and not answer_is_expected(protocol, response):
        raise BenchError(f"{what}: unexpected answer: {response.content[:300]!r}")


def answer_is_expected(protocol: Protocol, response: httpx.Response) -> bool:
    """Whether ``response`` carries ``protocol.outputs``, with their shapes, in its form."""
    expected = {name: list(shape) for name, shape in protocol.outputs}
    if protocol.key == "tf-json":
        predictions = response.json()["predictions"]
        if len(expected) == 1:
            return list(np.shape(predictions)) == next(iter(expected.values()))
        rows = predictions if isinstance(predictions, list) else []
        return (
            len(rows) == 1
            and isinstance(rows[0], dict)
            and all(
                [1, *np.shape(rows[0].get(name, []))] == shape for name, shape in expected.items()
            )
        )
    if protocol.key == "v2-json":
        found = {
            output["name"]: output["shape"]
            for output in response.json()["outputs"]
            if len(output["data"]) == math.prod(output["shape"])
        }
        return found == expected
    header_length = int(response.headers.get("Inference-Header-Content-Length", "-1"))
    size = sum(math.prod(shape) for shape in expected.values())
    return header_length > 0 and len(response.content) == header_length + 4 * size


def check_grpc_response(server: RunningServer, endpoint: Endpoint, protocol: Protocol) -> None:
    """Send one gRPC request, encoded as perf_analyzer encodes it, and check the answer."""
    import grpc

    what = f"{endpoint.label} ({endpoint.model}) {protocol.label}"
    inputs = request_inputs(endpoint.family)
    call = v2_grpc_shapes if protocol.key == "v2-grpc" else tf_grpc_shapes
    with grpc.insecure_channel(server.address(GRPC)) as channel:
        try:
            shapes = call(channel, endpoint.model, inputs)
        except grpc.RpcError as error:
            raise BenchError(f"{what}: {error}") from None
    expected = {name: list(shape) for name, shape in protocol.outputs}
    if endpoint.runs_model and shapes != expected:
        raise BenchError(f"{what}: unexpected answer: outputs {shapes}, expected {expected}")


def v2_grpc_shapes(channel: Any, model: str, inputs: Mapping[str, Array]) -> dict[str, list[int]]:
    """ModelInfer with ``raw_input_contents``: the answer's outputs whose raw contents fit."""
    from modelport._pb.kserve import grpc_service_pb2 as kserve

    request = kserve.ModelInferRequest(model_name=model)
    for name, x in inputs.items():
        request.inputs.add(name=name, datatype=V2_DATATYPES[x.dtype.name], shape=list(x.shape))
        request.raw_input_contents.append(raw_bytes(x))
    infer = channel.unary_unary(
        "/inference.GRPCInferenceService/ModelInfer",
        request_serializer=kserve.ModelInferRequest.SerializeToString,
        response_deserializer=kserve.ModelInferResponse.FromString,
    )
    response = infer(request, timeout=30.0)
    raws = list(response.raw_output_contents)
    return {
        output.name: list(output.shape)
        for index, output in enumerate(response.outputs)
        if index < len(raws) and len(raws[index]) == 4 * math.prod(output.shape)
    }


def tf_grpc_shapes(channel: Any, model: str, inputs: Mapping[str, Array]) -> dict[str, list[int]]:
    """Predict with the values in ``float_val``: the answer's outputs whose values fit."""
    from modelport._pb.tensorflow import tensor_pb2
    from modelport._pb.tfserving import apis_pb2

    request = apis_pb2.PredictRequest()
    request.model_spec.name = model
    for name, x in inputs.items():
        tensor = request.inputs[name]
        tensor.dtype = tensor_pb2.DT_FLOAT
        for size in x.shape:
            tensor.tensor_shape.dim.add().size = size
        tensor.float_val.extend(x.ravel().tolist())
    predict = channel.unary_unary(
        "/tensorflow.serving.PredictionService/Predict",
        request_serializer=apis_pb2.PredictRequest.SerializeToString,
        response_deserializer=apis_pb2.PredictResponse.FromString,
    )
    response = predict(request, timeout=30.0)
    shapes = {}
    for name, tensor in response.outputs.items():
        shape = [dim.size for dim in tensor.tensor_shape.dim]
        if len(tensor.float_val) == math.prod(shape):
            shapes[name] = shape
    return shapes


# --------------------------------------------------------------------------- load generators

_TIME_UNITS_US = {"us": 1.0, "ms": 1e3, "s": 1e6, "m": 60e6, "h": 3600e6}
_PERCENTILE = re.compile(r"^\s*(50|99)(?:\.0+)?%\s+([\d.]+)(us|ms|s|m|h)\s*$", re.MULTILINE)
_RPS = re.compile(r"^Requests/sec:\s+([\d.]+)", re.MULTILINE)
_NON_2XX = re.compile(r"Non-2xx or 3xx responses:\s+(\d+)")
_SOCKET_ERRORS = re.compile(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")


def parse_wrk(output: str) -> LoadResult:
    """Requests/s, p50, p99 and error counts from ``wrk --latency`` output."""
    percentiles = {
        int(match[1]): float(match[2]) * _TIME_UNITS_US[match[3]]
        for match in _PERCENTILE.finditer(output)
    }
    rps = _RPS.search(output)
    if rps is None or 50 not in percentiles or 99 not in percentiles:
        raise BenchError(f"could not parse wrk output:\n{output}")
    non_2xx = _NON_2XX.search(output)
    socket_errors = _SOCKET_ERRORS.search(output)
    return LoadResult(
        requests_per_s=float(rps[1]),
        p50_us=percentiles[50],
        p99_us=percentiles[99],
        non_2xx=int(non_2xx[1]) if non_2xx else 0,
        socket_errors=sum(int(n) for n in socket_errors.groups()) if socket_errors else 0,
    )


def run_wrk(
    url: str, protocol: Protocol, body: Path, concurrency: int, duration_s: int
) -> LoadResult:
    """Run wrk, pinned to the load CPU, posting ``body`` to ``url``."""
    argv = [
        "taskset", "-c", LOAD_CPU, "wrk", "-t1", f"-c{concurrency}", f"-d{duration_s}s",
        "--timeout", WRK_TIMEOUT, "--latency", "-s", str(LUA_SCRIPT), url,
    ]  # fmt: skip
    env = dict(os.environ, BENCH_BODY=str(body), BENCH_CONTENT_TYPE=protocol.content_type)
    if protocol.header_length is not None:
        env["BENCH_HEADER_LENGTH"] = str(protocol.header_length)
    completed = subprocess.run(
        argv, env=env, capture_output=True, text=True, timeout=duration_s + 60, check=False
    )
    if completed.returncode != 0:
        raise BenchError(f"wrk failed ({completed.returncode}):\n{completed.stderr}")
    return parse_wrk(completed.stdout)


def perf_analyzer_argv(
    binary: Path,
    address: str,
    model: str,
    protocol: Protocol,
    input_data: Path,
    *,
    concurrency: int,
    window_requests: int,
    csv_path: Path,
) -> list[str]:
    """perf_analyzer's command for one cell, pinned to the load CPU like wrk.

    Count windows of ``window_requests`` requests, stable when 3 in a row agree within
    PA_STABILITY_PERCENT; synchronous requests, one thread per concurrent request.
    """
    return [
        "taskset", "-c", LOAD_CPU, str(binary), "-m", model, "-u", address, *protocol.pa_options,
        "--input-data", str(input_data), "--concurrency-range", f"{concurrency}:{concurrency}",
        "--measurement-mode", "count_windows",
        "--measurement-request-count", str(window_requests),
        "-s", str(PA_STABILITY_PERCENT), "-f", str(csv_path),
    ]  # fmt: skip


def parse_perf_analyzer_csv(text: str) -> LoadResult:
    """Requests/s, p50 and p99 from the CSV report perf_analyzer writes with ``-f``.

    Its columns differ between services (the TF Serving report has no server columns), so
    they are read by name. Latencies are in microseconds; at batch 1, inferences are requests.
    """
    rows = list(csv.DictReader(io.StringIO(text)))
    try:
        row = rows[0]
        return LoadResult(
            requests_per_s=float(row["Inferences/Second"]),
            p50_us=float(row["p50 latency"]),
            p99_us=float(row["p99 latency"]),
            non_2xx=0,
            socket_errors=0,
        )
    except (IndexError, KeyError, TypeError, ValueError):
        raise BenchError(f"could not parse perf_analyzer's report:\n{text}") from None


def run_perf_analyzer(argv: Sequence[str], csv_path: Path) -> LoadResult:
    """Run perf_analyzer and read its report; it exits non-zero if any request failed."""
    csv_path.unlink(missing_ok=True)
    try:
        completed = subprocess.run(
            argv, capture_output=True, text=True, timeout=PA_TIMEOUT_S, check=False
        )
    except subprocess.TimeoutExpired:
        raise BenchError(
            f"perf_analyzer did not finish in {PA_TIMEOUT_S}s: {shlex.join(argv)}"
        ) from None
    if completed.returncode != 0 or not csv_path.is_file():
        output = "\n".join((completed.stdout + completed.stderr).strip().splitlines()[-20:])
        raise BenchError(
            f"perf_analyzer failed ({completed.returncode}): {shlex.join(argv)}\n{output}"
        )
    return parse_perf_analyzer_csv(csv_path.read_text())


def window_requests(requests_per_s: float, seconds: float) -> int:
    """Requests per count window for 3 windows to last about ``seconds`` at ``requests_per_s``."""
    if not requests_per_s > 0:
        return PA_MIN_WINDOW_REQUESTS
    return max(PA_MIN_WINDOW_REQUESTS, math.ceil(requests_per_s * seconds / PA_WINDOWS))


@dataclass
class LoadFiles:
    """What the load generators read besides the server: wrk's bodies, perf_analyzer's inputs."""

    bodies: dict[str, Path]  # wrk's request bodies, by family-protocol
    scratch: Path  # perf_analyzer writes its reports here
    perf_analyzer: Path | None = None
    input_data: dict[str, Path] = dataclasses.field(default_factory=dict)  # by family
    windows: dict[CellKey, int] = dataclasses.field(default_factory=dict)  # perf_analyzer cells

    def perf_analyzer_run(
        self,
        server: RunningServer,
        endpoint: Endpoint,
        protocol: Protocol,
        *,
        concurrency: int,
        window: int,
    ) -> LoadResult:
        """Run perf_analyzer once with ``window`` requests per count window."""
        if self.perf_analyzer is None:
            raise BenchError(f"perf_analyzer is needed for {protocol.label}; {MAKE_TOOLS_HINT}")
        csv_path = self.scratch / "perf_analyzer.csv"
        argv = perf_analyzer_argv(
            self.perf_analyzer,
            server.address(protocol.transport),
            endpoint.model,
            protocol,
            self.input_data[endpoint.family],
            concurrency=concurrency,
            window_requests=window,
            csv_path=csv_path,
        )
        return run_perf_analyzer(argv, csv_path)


def run_load(
    server: RunningServer,
    endpoint: Endpoint,
    protocol: Protocol,
    files: LoadFiles,
    *,
    concurrency: int,
    duration_s: int,
) -> LoadResult:
    """Load one endpoint with one protocol: wrk for ``duration_s``, or perf_analyzer."""
    if protocol.client == WRK:
        url = server.base_url + protocol.path(endpoint.model)
        return run_wrk(url, protocol, body_path(files.bodies, protocol), concurrency, duration_s)
    window = files.windows[(endpoint.key, protocol.key, concurrency)]
    return files.perf_analyzer_run(
        server, endpoint, protocol, concurrency=concurrency, window=window
    )


def cpu_ticks(cpu: str) -> tuple[int, int]:
    """Busy and total clock ticks of one CPU so far, from /proc/stat."""
    for line in Path("/proc/stat").read_text().splitlines():
        fields = line.split()
        if fields[0] == f"cpu{cpu}":
            user, nice, system, idle, iowait, irq, softirq, steal = map(int, fields[1:9])
            busy = user + nice + system + irq + softirq + steal
            return busy, busy + idle + iowait
    raise BenchError(f"CPU {cpu} not found in /proc/stat")


def process_ticks(pid: int) -> int:
    """User plus system clock ticks used by a process (all its threads) so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime, stime


def measure_cell(
    server: RunningServer,
    endpoint: Endpoint,
    protocol: Protocol,
    files: LoadFiles,
    *,
    concurrency: int,
    duration_s: int,
) -> LoadResult:
    """Load the endpoint once, and note how much of CPU 0 went to anything but its server."""
    busy_before, total_before = cpu_ticks(SERVER_CPU)
    server_before = process_ticks(server.process.pid)
    result = run_load(
        server, endpoint, protocol, files, concurrency=concurrency, duration_s=duration_s
    )
    busy_after, total_after = cpu_ticks(SERVER_CPU)
    ensure_alive(server)
    server_ticks = process_ticks(server.process.pid) - server_before
    foreign = max(0, busy_after - busy_before - server_ticks) / max(1, total_after - total_before)
    wait_idle(server)
    return dataclasses.replace(result, foreign_cpu=foreign)


def wait_idle(server: RunningServer) -> None:
    """Wait until the server has finished the work the load generator left in flight.

    wrk stops with up to one request per connection in flight; the server may still compute
    them after wrk has gone (half a second for MiniLM at concurrency 32), and that must not
    eat into the next cell. Idle: at most one clock tick of CPU time in ``IDLE_POLL_S``.
    """
    deadline = time.monotonic() + IDLE_TIMEOUT_S
    before = process_ticks(server.process.pid)
    while time.monotonic() < deadline:
        time.sleep(IDLE_POLL_S)
        now = process_ticks(server.process.pid)
        if now - before <= 1:
            return
        before = now


# --------------------------------------------------------------------------- raw engine


def engine_feeds(family: str, batch: int) -> dict[str, Array]:
    """The engine's input for ``batch`` rows: the request's row at batch 1."""
    if family in (MNIST, TORCHSCRIPT) and batch > 1:
        rng = np.random.default_rng(SEED)
        return {"images": rng.random((batch, MNIST_FEATURES), dtype=np.float32)}
    return {name: np.repeat(x, batch, axis=0) for name, x in request_inputs(family).items()}


#: Binds an engine to one input: a call that runs the model once on it.
Bind = Callable[[dict[str, Array]], Callable[[], object]]


@contextmanager
def onnxruntime_calls(path: str) -> Iterator[Bind]:
    """``session.run`` on the model at ``path``: one intra-op thread, sequential execution."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    run = session.run

    def bind(feeds: dict[str, Array]) -> Callable[[], object]:
        return lambda: run(None, feeds)

    yield bind


@contextmanager
def torch_calls(path: str) -> Iterator[Bind]:
    """forward() of the TorchScript file at ``path``, one thread, under torch.inference_mode().

    The inputs become tensors once, before timing: the calls measure forward() alone.
    """
    torch = import_torch()
    torch.set_num_threads(1)
    with torchscript_deprecation_ignored():
        module = torch.jit.load(path, map_location="cpu")
    module.eval()

    def bind(feeds: dict[str, Array]) -> Callable[[], object]:
        tensors = [torch.from_numpy(x) for x in feeds.values()]
        return lambda: module(*tensors)

    with torch.inference_mode():
        yield bind


ENGINE_CALLS = {ONNXRUNTIME: onnxruntime_calls, TORCH: torch_calls}


def engine_probe(
    family: str, path: str, calls: int, batch_seconds: float, runtime: str = ONNXRUNTIME
) -> dict[str, object]:
    """Measure the raw engine in this process (run pinned, in a subprocess, by the runner)."""
    batches = next(e.batches for e in ENGINES if e.family == family)
    with ENGINE_CALLS[runtime](path) as bind:
        call = bind(engine_feeds(family, 1))
        for _ in range(min(1000, max(3, calls // 20))):
            call()
        timings = np.empty(calls, dtype=np.float64)
        for i in range(calls):
            start = time.perf_counter_ns()
            call()
            timings[i] = time.perf_counter_ns() - start
        timings /= 1e3
        rows_per_s = {
            str(batch): batch_rows_per_s(bind(engine_feeds(family, batch)), batch, batch_seconds)
            for batch in batches
        }
    return {
        "p50_us": float(np.percentile(timings, 50)),
        "p99_us": float(np.percentile(timings, 99)),
        "mean_us": float(timings.mean()),
        "rows_per_s": rows_per_s,
    }


def batch_rows_per_s(call: Callable[[], object], batch: int, seconds: float) -> float:
    """Rows per second of ``call`` on ``batch`` rows: at least 3 calls and ``seconds``."""
    warm_until = time.perf_counter() + seconds / 5
    call()
    while time.perf_counter() < warm_until:
        call()
    calls = 0
    start = time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds or calls < 3:
        call()
        calls += 1
    return batch * calls / elapsed


def engine_budget(family: str, settings: Settings) -> tuple[int, float]:
    """Timed batch-1 calls and seconds per batch size for ``family``'s engine probe."""
    if family not in MINILM_FAMILIES:
        return settings.calls, 0.2 if settings.quick else 0.5
    # MiniLM takes ~15 ms a row on this CPU: a hundred batch-1 calls are plenty for a p50.
    return (20, 0.3) if settings.quick else (100, 1.0)


def measure_engine(engine: Engine, repos: Mapping[str, Path], settings: Settings) -> EngineResult:
    """Run the probe of ``engine`` pinned to the server CPU and read its figures."""
    calls, batch_seconds = engine_budget(engine.family, settings)
    argv = [
        "taskset", "-c", SERVER_CPU, sys.executable, str(Path(__file__).resolve()),
        "--engine-probe", str(engine_path(repos, engine)), "--engine-family", engine.family,
        "--engine-runtime", engine.runtime,
        "--calls", str(calls), "--batch-seconds", str(batch_seconds),
    ]  # fmt: skip
    completed = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=600)
    if completed.returncode != 0:
        raise BenchError(f"engine probe for {engine.name} failed:\n{completed.stderr}")
    data = json.loads(completed.stdout)
    return EngineResult(
        p50_us=data["p50_us"],
        p99_us=data["p99_us"],
        mean_us=data["mean_us"],
        rows_per_s={int(b): v for b, v in data["rows_per_s"].items()},
    )


def median_engine(results: Sequence[EngineResult]) -> EngineResult:
    """The per-figure median of several engine measurements."""
    batches = results[0].rows_per_s
    return EngineResult(
        p50_us=statistics.median(r.p50_us for r in results),
        p99_us=statistics.median(r.p99_us for r in results),
        mean_us=statistics.median(r.mean_us for r in results),
        rows_per_s={b: statistics.median(r.rows_per_s[b] for r in results) for b in batches},
    )


# --------------------------------------------------------------------------- the run


def warm_up(
    servers: Mapping[str, RunningServer],
    groups: Sequence[Group],
    protocols: Mapping[tuple[str, str], Protocol],
    files: LoadFiles,
    settings: Settings,
) -> None:
    """Check every endpoint's answers, then load each protocol briefly before measuring.

    wrk loads each endpoint and protocol at its highest concurrency for ``--warmup`` seconds.
    perf_analyzer runs a short calibration of every one of its cells instead, whose requests/s
    size that cell's count windows (kept for every round, so rounds measure alike).
    """
    highest: dict[tuple[str, str], int] = {}
    for group in groups:
        for key in group.endpoints:
            pair = (key, group.protocol)
            highest[pair] = max(highest.get(pair, 0), group.concurrency)
    for (key, protocol_key), concurrency in highest.items():
        endpoint = ENDPOINT_BY_KEY[key]
        server = servers[endpoint.server]
        protocol = protocols[(endpoint.family, protocol_key)]
        check_response(server, endpoint, protocol)
        if protocol.client == WRK and settings.warmup_s > 0:
            run_load(
                server,
                endpoint,
                protocol,
                files,
                concurrency=concurrency,
                duration_s=settings.warmup_s,
            )
            wait_idle(server)
    for group in groups:
        protocol = protocols[(group.family, group.protocol)]
        if protocol.client == PERF_ANALYZER:
            for key in group.endpoints:
                endpoint = ENDPOINT_BY_KEY[key]
                calibrate(
                    servers[endpoint.server],
                    endpoint,
                    protocol,
                    concurrency=group.concurrency,
                    files=files,
                    settings=settings,
                )


def calibrate(
    server: RunningServer,
    endpoint: Endpoint,
    protocol: Protocol,
    *,
    concurrency: int,
    files: LoadFiles,
    settings: Settings,
) -> None:
    """Size a perf_analyzer cell's count windows from a short run (which also warms it up)."""
    probe = files.perf_analyzer_run(
        server, endpoint, protocol, concurrency=concurrency, window=PA_CALIBRATION_REQUESTS
    )
    wait_idle(server)
    window = window_requests(probe.requests_per_s, settings.cell_seconds(endpoint.family))
    files.windows[(endpoint.key, protocol.key, concurrency)] = window
    print(
        f"  {endpoint.model:<14} {protocol.label:<9} c={concurrency:<3} perf_analyzer "
        f"calibration: {probe.requests_per_s:.0f} req/s, {window} requests a window",
        file=sys.stderr,
    )


def run_round(
    index: int,
    groups: Sequence[Group],
    *,
    servers: Mapping[str, RunningServer],
    protocols: Mapping[tuple[str, str], Protocol],
    files: LoadFiles,
    settings: Settings,
    results: dict[CellKey, list[LoadResult]],
) -> None:
    """Measure every cell once; within a group the endpoints' order rotates between rounds."""
    for group in groups:
        shift = index % len(group.endpoints)
        order = [*group.endpoints[shift:], *group.endpoints[:shift]]
        protocol = protocols[(group.family, group.protocol)]
        for key in order:
            endpoint = ENDPOINT_BY_KEY[key]
            server = servers[endpoint.server]
            result = measure_cell(
                server,
                endpoint,
                protocol,
                files,
                concurrency=group.concurrency,
                duration_s=settings.cell_seconds(group.family),
            )
            results.setdefault((key, protocol.key, group.concurrency), []).append(result)
            print(
                f"  {endpoint.model:<14} {endpoint.label:<20} {protocol.label:<9}"
                f" {protocol.client:<13} c={group.concurrency:<3}"
                f" {result.requests_per_s:>9.1f} req/s"
                f"  p50 {format_us(result.p50_us):>9}  p99 {format_us(result.p99_us):>9}"
                f"  (others on CPU {SERVER_CPU}: {result.foreign_cpu:.0%})",
                file=sys.stderr,
            )


def load_files(
    settings: Settings,
    protocols: Mapping[tuple[str, str], Protocol],
    groups: Sequence[Group],
    work_dir: Path,
) -> LoadFiles:
    """Write what the load generators read: wrk's bodies, perf_analyzer's input folders."""
    files = LoadFiles(write_bodies(protocols, work_dir), work_dir, settings.perf_analyzer)
    if uses_perf_analyzer(groups):
        families = {group.family for group in groups if group.protocol in PA_PROTOCOLS}
        files.input_data = {family: write_input_data(family, work_dir) for family in families}
    return files


def benchmark(settings: Settings, work_dir: Path) -> Measurements:
    """Build the models, start the servers, warm them up, and measure every cell and engine."""
    started = time.monotonic()
    repos, gate = build_repository(settings.families, work_dir)
    print(f"built the benchmark models in {time.monotonic() - started:.1f}s", file=sys.stderr)
    if gate is not None:
        print(f"int8 MiniLM: {gate_text(gate)}", file=sys.stderr)
    protocols = make_protocols(settings.families)
    groups = settings_plan(settings)
    files = load_files(settings, protocols, groups, work_dir)
    results: dict[CellKey, list[LoadResult]] = {}
    probes = chosen_engines(settings.families)
    engines: dict[str, list[EngineResult]] = {engine.key: [] for engine in probes}
    with ExitStack() as stack:
        servers = {
            spec.key: stack.enter_context(running_server(spec, work_dir))
            for spec in make_servers(settings, repos)
        }
        print("checking answers and warming up", file=sys.stderr)
        warm_up(servers, groups, protocols, files, settings)
        for index in range(settings.rounds):
            print(f"round {index + 1}/{settings.rounds}", file=sys.stderr)
            for engine in probes:
                engines[engine.key].append(measure_engine(engine, repos, settings))
            run_round(
                index,
                groups,
                servers=servers,
                protocols=protocols,
                files=files,
                settings=settings,
                results=results,
            )
    return Measurements(results, engines, gate)


# --------------------------------------------------------------------------- aggregation


def floor_protocol(protocol_key: str) -> str | None:
    """The floor echo protocol a wrk cell's ratio compares with (same API), if any.

    perf_analyzer's cells have none: gRPC, which the floor does not serve, and the cross-check.
    """
    if protocol_key in PA_PROTOCOLS:
        return None
    return "tf-json" if protocol_key == "tf-json" else "v2-json"


def paired_median(
    values: Sequence[float], references: Sequence[float], combine: Callable[[float, float], float]
) -> float | None:
    """The median over rounds of ``combine(value, reference)``, rounds paired in order."""
    if not values or len(values) != len(references):
        return None
    return statistics.median(combine(v, r) for v, r in zip(values, references, strict=True))


def ratio(value: float, reference: float) -> float:
    """``value / reference``."""
    return value / reference


def difference(value: float, reference: float) -> float:
    """``value - reference``."""
    return value - reference


def family_reference(family: str) -> str:
    """What a family's ratio column compares requests/s with.

    mnist and tabular: the floor's echo endpoint. MiniLM: the raw engine's best rows/s, the most
    the CPU computes with or without batching. TorchScript, served without batching: the raw
    engine's rows/s at batch 1, the most an unbatched server could answer.
    """
    if family in FLOOR_FAMILIES:
        return FLOOR_REFERENCE
    return BEST_REFERENCE if family in MINILM_FAMILIES else BATCH1_REFERENCE


def engine_reference(engine: EngineResult, reference: str) -> float:
    """The raw engine's rows/s a cell is compared with: its best, or at batch 1."""
    return engine.best_rows_per_s if reference == BEST_REFERENCE else engine.rows_per_s[1]


def reference_rps(measurements: Measurements, key: CellKey) -> list[float]:
    """Per round, what a cell's requests/s are compared with (see ``family_reference``).

    mnist and tabular cells over HTTP: floor echo's requests/s for the same model at the same
    concurrency and API (none for gRPC cells). Other cells: their raw engine's rows/s.
    """
    endpoint = ENDPOINT_BY_KEY[key[0]]
    reference = family_reference(endpoint.family)
    if reference != FLOOR_REFERENCE:
        runs = measurements.engines.get(endpoint.engine, [])
        return [engine_reference(engine, reference) for engine in runs]
    floor = floor_protocol(key[1])
    if floor is None:
        return []
    echo = next(
        e.key for e in ENDPOINTS if e.server == "floor-echo" and e.family == endpoint.family
    )
    return [r.requests_per_s for r in measurements.results.get((echo, floor, key[2]), [])]


def rps_ratio(measurements: Measurements, key: CellKey, reference: CellKey) -> float | None:
    """The median over rounds of a cell's requests/s over another cell's, rounds paired."""
    values = [r.requests_per_s for r in measurements.results.get(key, [])]
    references = [r.requests_per_s for r in measurements.results.get(reference, [])]
    return paired_median(values, references, ratio)


def aggregate(measurements: Measurements) -> dict[CellKey, Cell]:
    """The median over rounds of every cell."""
    cells = {}
    for key, runs in measurements.results.items():
        rps = [r.requests_per_s for r in runs]
        cells[key] = Cell(
            requests_per_s=statistics.median(rps),
            p50_us=statistics.median(r.p50_us for r in runs),
            p99_us=statistics.median(r.p99_us for r in runs),
            rps_min=min(rps),
            rps_max=max(rps),
            errors=sum(r.non_2xx + r.socket_errors for r in runs),
            ratio=paired_median(rps, reference_rps(measurements, key), ratio),
            vs_json=rps_ratio(measurements, key, (key[0], "v2-json", key[2])),
        )
    return cells


# --------------------------------------------------------------------------- formatting


def format_us(value: float) -> str:
    """A duration in microseconds, as us below 1 ms and ms above."""
    if abs(value) < 100:
        return f"{value:.1f} us"
    if abs(value) < 1000:
        return f"{value:.0f} us"
    return f"{value / 1000:.2f} ms"


def plural(count: int, noun: str) -> str:
    """``count`` and ``noun``, with an s unless ``count`` is 1."""
    return f"{count} {noun}" + ("" if count == 1 else "s")


def format_rps(value: float) -> str:
    """Requests or rows per second: whole numbers, one decimal below 100."""
    return f"{value:.1f}" if value < 100 else f"{value:.0f}"


TableRow = list[str]


def json_column(family: str) -> bool:
    """Whether a family's table has a "vs V2 JSON" column: MiniLM is sent as V2 JSON only."""
    return family not in MINILM_FAMILIES


def table_headers(family: str) -> TableRow:
    """A family's table columns."""
    return [
        "server",
        "protocol",
        "concurrency",
        "requests/s",
        "p50",
        "p99",
        "serving overhead",
        f"ratio to {family_reference(family)}",
        *(["vs V2 JSON"] if json_column(family) else []),
        "requests/s range over rounds",
    ]


def format_ratio(value: float | None) -> str:
    """A ratio as ``1.23x``; ``n/a`` when the rounds gave none."""
    return "n/a" if value is None else f"{value:.2f}x"


def engine_row(spec: Engine, engine: EngineResult) -> TableRow:
    """The raw engine's batch-1 line of a family's table."""
    rps = 1e6 / engine.mean_us
    reference = family_reference(spec.family)
    compared = "-"
    if reference != FLOOR_REFERENCE:
        compared = format_ratio(rps / engine_reference(engine, reference))
    return [
        spec.label,
        spec.call,
        "1",
        format_rps(rps),
        format_us(engine.p50_us),
        format_us(engine.p99_us),
        "0 (reference)",
        compared,
        *(["-"] if json_column(spec.family) else []),
        "-",
    ]


def cell_row(
    endpoint: Endpoint, protocol: Protocol, concurrency: int, cell: Cell, engine: EngineResult
) -> TableRow:
    """One endpoint's line for one protocol and concurrency."""
    overhead = format_us(cell.p50_us - engine.p50_us) if endpoint.runs_model else "- (no model)"
    errors = f" ({cell.errors} errors!)" if cell.errors else ""
    compared = floor_protocol(protocol.key) is not None or endpoint.family not in FLOOR_FAMILIES
    return [
        endpoint.label,
        protocol.label,
        str(concurrency),
        f"{format_rps(cell.requests_per_s)}{errors}",
        format_us(cell.p50_us),
        format_us(cell.p99_us),
        overhead,
        format_ratio(cell.ratio) if compared else "-",
        *([format_ratio(cell.vs_json)] if json_column(endpoint.family) else []),
        f"{format_rps(cell.rps_min)}-{format_rps(cell.rps_max)}",
    ]


def family_rows(
    family: str,
    groups: Sequence[Group],
    protocols: Mapping[tuple[str, str], Protocol],
    cells: Mapping[CellKey, Cell],
    engines: Mapping[str, EngineResult],
) -> list[TableRow]:
    """A family's table: its engines first, then each group's endpoints in plan order."""
    rows = [engine_row(spec, engines[spec.key]) for spec in family_engines(family)]
    for group in groups:
        if group.family != family or group.cross_check:
            continue
        protocol = protocols[(family, group.protocol)]
        for key in group.endpoints:
            endpoint = ENDPOINT_BY_KEY[key]
            cell = cells[(key, group.protocol, group.concurrency)]
            engine = engines[endpoint.engine]
            rows.append(cell_row(endpoint, protocol, group.concurrency, cell, engine))
    return rows


#: The engine summary's rows: the modelport endpoints of the families it covers.
SUMMARY_FAMILIES = (MINILM_INT8, TORCHSCRIPT)
SUMMARY_HEADERS = [
    "model",
    "server",
    "protocol",
    f"p50, c={LATENCY_CONCURRENCY}",
    "raw p50, batch 1",
    "p50 / raw",
    f"requests/s, c={THROUGHPUT_CONCURRENCY}",
    "raw rows/s, batch 1",
    "requests/s / raw",
    "raw best rows/s (batch)",
]
SUMMARY_ALIGN = ["---", "---", "---", *["---:"] * (len(SUMMARY_HEADERS) - 3)]


def latency_vs_engine(measurements: Measurements, key: CellKey) -> float | None:
    """The median over rounds of a cell's p50 / its raw engine's batch-1 p50, rounds paired."""
    engines = measurements.engines.get(ENDPOINT_BY_KEY[key[0]].engine, [])
    runs = measurements.results.get(key, [])
    return paired_median([r.p50_us for r in runs], [e.p50_us for e in engines], ratio)


def throughput_vs_engine(measurements: Measurements, key: CellKey) -> float | None:
    """The median over rounds of a cell's requests/s / its raw engine's batch-1 rows/s."""
    engines = measurements.engines.get(ENDPOINT_BY_KEY[key[0]].engine, [])
    runs = measurements.results.get(key, [])
    return paired_median(
        [r.requests_per_s for r in runs], [e.rows_per_s[1] for e in engines], ratio
    )


def summary_rows(
    groups: Sequence[Group],
    protocols: Mapping[tuple[str, str], Protocol],
    measurements: Measurements,
    cells: Mapping[CellKey, Cell],
    engines: Mapping[str, EngineResult],
) -> list[TableRow]:
    """modelport beside its raw engine, a row per endpoint and protocol of SUMMARY_FAMILIES.

    p50 at LATENCY_CONCURRENCY against the engine's batch-1 p50, requests/s at
    THROUGHPUT_CONCURRENCY against the engine's batch-1 rows/s (both ratios paired by round),
    and the engine's best rows/s with its batch size.
    """
    rows = []
    for group in groups:
        if group.family not in SUMMARY_FAMILIES or group.concurrency != LATENCY_CONCURRENCY:
            continue
        protocol = protocols[(group.family, group.protocol)]
        for key in group.endpoints:
            endpoint = ENDPOINT_BY_KEY[key]
            spec = ENGINE_BY_KEY[endpoint.engine]
            engine = engines[spec.key]
            latency = (key, group.protocol, LATENCY_CONCURRENCY)
            throughput = (key, group.protocol, THROUGHPUT_CONCURRENCY)
            rows.append(
                [
                    spec.name,
                    endpoint.label.split(",")[0],
                    protocol.label,
                    format_us(cells[latency].p50_us),
                    format_us(engine.p50_us),
                    format_ratio(latency_vs_engine(measurements, latency)),
                    format_rps(cells[throughput].requests_per_s),
                    format_rps(engine.rows_per_s[1]),
                    format_ratio(throughput_vs_engine(measurements, throughput)),
                    f"{format_rps(engine.best_rows_per_s)} ({engine.best_batch})",
                ]
            )
    return rows


def run_p50(run: LoadResult) -> float:
    """A load generator run's p50."""
    return run.p50_us


def run_rps(run: LoadResult) -> float:
    """A load generator run's requests/s."""
    return run.requests_per_s


def side_by_side(
    name: str,
    fp32: Sequence[T],
    int8: Sequence[T],
    figure: Callable[[T], float],
    text: Callable[[float], str],
) -> TableRow:
    """One figure of fp32 and int8 runs: the median of each, and int8 / fp32 paired by round."""
    before = [figure(run) for run in fp32]
    after = [figure(run) for run in int8]
    return [
        name,
        text(statistics.median(before)),
        text(statistics.median(after)),
        format_ratio(paired_median(after, before, ratio)),
    ]


def int8_rows(measurements: Measurements, gate: GateSummary | None) -> list[TableRow]:
    """MiniLM fp32 and int8 side by side: the raw engine, modelport without and with batching
    at LATENCY_CONCURRENCY and THROUGHPUT_CONCURRENCY, and the model file."""
    fp32 = measurements.engines[MINILM_FP32_MODEL]
    int8 = measurements.engines[MINILM_INT8_MODEL]
    rows = [
        side_by_side("raw engine p50, batch 1", fp32, int8, lambda e: e.p50_us, format_us),
        side_by_side(
            "raw engine rows/s, batch 1", fp32, int8, lambda e: e.rows_per_s[1], format_rps
        ),
        side_by_side("raw engine best rows/s", fp32, int8, lambda e: e.best_rows_per_s, format_rps),
    ]
    for suffix, label in (("", "modelport"), ("-batched", "modelport + batching")):
        for concurrency, name, figure, text in (
            (LATENCY_CONCURRENCY, "p50", run_p50, format_us),
            (THROUGHPUT_CONCURRENCY, "requests/s", run_rps, format_rps),
        ):
            before, after = (
                measurements.results.get((f"mp-minilm-{variant}{suffix}", "v2-json", concurrency))
                for variant in ("fp32", "int8")
            )
            if before and after:
                title = f"{label} {name}, c={concurrency}"
                rows.append(side_by_side(title, before, after, figure, text))
    if gate is not None:
        size = [gate.source_bytes], [gate.result_bytes]
        rows.append(side_by_side("model file", *size, float, format_megabytes))
    return rows


INT8_HEADERS = ["figure", "fp32", "int8", "int8 / fp32"]


def format_figure(value: float, unit: str) -> str:
    """A latency (``us``) or a rate (``rps``) for the int8 table."""
    return format_us(value) if unit == "us" else format_rps(value)


def format_megabytes(size: float) -> str:
    """A file size in MB (10^6 bytes)."""
    return f"{size / 1e6:.1f} MB"


def gate_text(gate: GateSummary) -> str:
    """What the quantize gate measured, in words."""
    return (
        f"modelport quantize's gate passed with a least cosine similarity of "
        f"{gate.min_cosine:.4f} to fp32 over {plural(gate.rows, 'sample row')} "
        f"({gate.required:g} required); {format_megabytes(gate.source_bytes)} -> "
        f"{format_megabytes(gate.result_bytes)}"
    )


CROSS_CHECK_HEADERS = [
    "server",
    "protocol",
    "concurrency",
    "load generator",
    "requests/s",
    "p50",
    "p99",
    "vs wrk, V2 binary",
]


#: The cross-check's rows for each endpoint and concurrency: (protocol key, label, client).
CROSS_CHECK_FORMS = (
    ("v2-binary", "V2 binary", WRK),
    ("pa-v2-binary", "V2 binary", PERF_ANALYZER),
    ("v2-grpc", "V2 gRPC", PERF_ANALYZER),
)


def cross_check_rows(
    groups: Sequence[Group], cells: Mapping[CellKey, Cell], measurements: Measurements
) -> list[TableRow]:
    """wrk's and perf_analyzer's figures for the same endpoints, next to each other.

    For each cross-check group's endpoint and concurrency: V2 binary sent by wrk, V2 binary
    sent by perf_analyzer, then V2 gRPC (perf_analyzer), each compared with the first.
    """
    rows = []
    for group in groups:
        if not group.cross_check:
            continue
        for key in group.endpoints:
            endpoint = ENDPOINT_BY_KEY[key]
            reference = (key, "v2-binary", group.concurrency)
            for protocol_key, label, client in CROSS_CHECK_FORMS:
                cell_key = (key, protocol_key, group.concurrency)
                cell = cells.get(cell_key)
                if cell is None:
                    continue
                rows.append(
                    [
                        endpoint.label,
                        label,
                        str(group.concurrency),
                        client,
                        format_rps(cell.requests_per_s),
                        format_us(cell.p50_us),
                        format_us(cell.p99_us),
                        format_ratio(rps_ratio(measurements, cell_key, reference)),
                    ]
                )
    return rows


def text_table(headers: TableRow, rows: Sequence[TableRow]) -> str:
    """A table as aligned plain text, for the terminal."""
    lines = [headers, *rows]
    widths = [max(len(line[i]) for line in lines) for i in range(len(headers))]
    rendered = ["  ".join(f.ljust(w) for f, w in zip(line, widths, strict=True)) for line in lines]
    rendered.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(line.rstrip() for line in rendered)


def markdown_table(headers: TableRow, rows: Sequence[TableRow], align: Sequence[str]) -> str:
    """A table as GitHub markdown with the given column alignments."""
    lines = [headers, list(align), *rows]
    return "\n".join("| " + " | ".join(line) + " |" for line in lines)


def family_markdown(headers: TableRow, rows: Sequence[TableRow]) -> str:
    """A family's results table as markdown; numeric columns right-aligned."""
    return markdown_table(headers, rows, ["---", "---", *["---:"] * (len(headers) - 2)])


def engine_batch_table(engine: EngineResult) -> str:
    """The raw engine's rows/s by batch size, as markdown, best marked."""
    lines = ["| batch | rows/s | time per call |", "| ---: | ---: | ---: |"]
    for batch, rows_per_s in engine.rows_per_s.items():
        mark = " (best)" if batch == engine.best_batch else ""
        per_call = format_us(1e6 * batch / rows_per_s)
        lines.append(f"| {batch}{mark} | {format_rps(rows_per_s)} | {per_call} |")
    return "\n".join(lines)


# --------------------------------------------------------------------------- targets


def not_measured(name: str, goal: str, family: str) -> TargetResult:
    """A target this run did not measure, because ``family`` was left out."""
    return TargetResult(name, f"not measured ({family} not in --models)", goal, None)


def runs_of(measurements: Measurements, key: CellKey) -> list[LoadResult]:
    """A cell's runs, or fail if the plan never measured it."""
    runs = measurements.results.get(key)
    if not runs:
        raise BenchError(f"no measurements for {key}")
    return runs


def target_mnist_throughput(cells: Mapping[CellKey, Cell]) -> TargetResult:
    """(a) mnist batch-1 V2 JSON at concurrency 32 with batching: requests/s and floor ratio."""
    name = "(a) mnist V2 JSON, batching, concurrency 32: requests/s and ratio to floor echo"
    goal = f">= {TARGET_MNIST_RPS:.0f} req/s and >= {TARGET_MNIST_RATIO:.2f}x"
    cell = cells[("mp-mnist-batched", "v2-json", 32)]
    if cell.ratio is None:
        return TargetResult(name, "no floor echo figures to compare with", goal, None)
    measured = f"{format_rps(cell.requests_per_s)} req/s, {cell.ratio:.2f}x floor echo"
    met = cell.requests_per_s >= TARGET_MNIST_RPS and cell.ratio >= TARGET_MNIST_RATIO
    return TargetResult(name, measured, goal, met)


def target_mnist_latency(measurements: Measurements) -> TargetResult:
    """(b) mnist at concurrency 1 with batching: p50 minus floor echo's p50 (V2 JSON)."""
    name = "(b) mnist V2 JSON, batching, concurrency 1: p50 minus floor echo's p50"
    goal = f"<= {TARGET_LATENCY_GAP_US:.0f} us"
    runs = runs_of(measurements, ("mp-mnist-batched", "v2-json", 1))
    floor = runs_of(measurements, ("floor-echo", "v2-json", 1))
    gap = paired_median([r.p50_us for r in runs], [r.p50_us for r in floor], difference)
    if gap is None:
        return TargetResult(name, "rounds do not pair up", goal, None)
    modelport_p50 = statistics.median(r.p50_us for r in runs)
    floor_p50 = statistics.median(r.p50_us for r in floor)
    measured = (
        f"+{format_us(gap)} (p50 {format_us(modelport_p50)} vs floor echo {format_us(floor_p50)})"
    )
    return TargetResult(name, measured, goal, gap <= TARGET_LATENCY_GAP_US)


def target_minilm(cells: Mapping[CellKey, Cell], engine: EngineResult) -> TargetResult:
    """(c) MiniLM at concurrency 16: modelport's best as a share of the raw engine's best."""
    name = "(c) MiniLM V2 JSON, concurrency 16: modelport's best requests/s vs raw best rows/s"
    goal = f">= {TARGET_MINILM_FRACTION:.0%}"
    candidates: list[tuple[float, str, Cell]] = []
    for key in ("mp-minilm", "mp-minilm-batched"):
        cell = cells[(key, "v2-json", 16)]
        if cell.ratio is not None:
            candidates.append((cell.ratio, ENDPOINT_BY_KEY[key].label, cell))
    if not candidates:
        return TargetResult(name, "no engine figures to compare with", goal, None)
    share, label, cell = max(candidates, key=lambda candidate: candidate[0])
    measured = (
        f"{share:.0%}: {label} {format_rps(cell.requests_per_s)} req/s vs "
        f"{format_rps(engine.best_rows_per_s)} rows/s (batch {engine.best_batch})"
    )
    return TargetResult(name, measured, goal, share >= TARGET_MINILM_FRACTION)


def target_binary(measurements: Measurements, endpoint: Endpoint, concurrency: int) -> TargetResult:
    """(d) mnist V2 binary vs V2 JSON for one endpoint and concurrency: binary should win."""
    name = f"(d) mnist V2 binary vs V2 JSON, {endpoint.label}, concurrency {concurrency}"
    binary = runs_of(measurements, (endpoint.key, "v2-binary", concurrency))
    v2_json = runs_of(measurements, (endpoint.key, "v2-json", concurrency))
    binary_rps = [r.requests_per_s for r in binary]
    json_rps = [r.requests_per_s for r in v2_json]
    speedup = paired_median(binary_rps, json_rps, ratio)
    goal = BINARY_GOAL
    if speedup is None:
        return TargetResult(name, "rounds do not pair up", goal, None)
    measured = (
        f"{speedup:.2f}x: {format_rps(statistics.median(binary_rps))} vs "
        f"{format_rps(statistics.median(json_rps))} req/s, p50 "
        f"{format_us(statistics.median(r.p50_us for r in binary))} vs "
        f"{format_us(statistics.median(r.p50_us for r in v2_json))}"
    )
    return TargetResult(name, measured, goal, speedup > 1.0)


def target_grpc(measurements: Measurements, endpoint: Endpoint, concurrency: int) -> TargetResult:
    """(e) mnist V2 gRPC vs V2 JSON for one endpoint and concurrency: gRPC should be 1.5x."""
    name = f"(e) mnist V2 gRPC vs V2 JSON, {endpoint.label}, concurrency {concurrency}"
    grpc = runs_of(measurements, (endpoint.key, "v2-grpc", concurrency))
    v2_json = runs_of(measurements, (endpoint.key, "v2-json", concurrency))
    grpc_rps = [r.requests_per_s for r in grpc]
    json_rps = [r.requests_per_s for r in v2_json]
    speedup = paired_median(grpc_rps, json_rps, ratio)
    if speedup is None:
        return TargetResult(name, "rounds do not pair up", GRPC_GOAL, None)
    measured = (
        f"{speedup:.2f}x: {format_rps(statistics.median(grpc_rps))} vs "
        f"{format_rps(statistics.median(json_rps))} req/s, p50 "
        f"{format_us(statistics.median(r.p50_us for r in grpc))} vs "
        f"{format_us(statistics.median(r.p50_us for r in v2_json))}"
    )
    return TargetResult(name, measured, GRPC_GOAL, speedup >= TARGET_GRPC_SPEEDUP)


def grpc_targets(measurements: Measurements, settings: Settings) -> list[TargetResult]:
    """(e) for modelport without and with batching at concurrency 1 and 32, when measured."""
    if MNIST not in settings.families:
        return [not_measured("(e) mnist V2 gRPC vs V2 JSON", GRPC_GOAL, MNIST)]
    if settings.perf_analyzer is None:
        reason = f"not measured ({settings.perf_analyzer_note})"
        return [TargetResult("(e) mnist V2 gRPC vs V2 JSON", reason, GRPC_GOAL, None)]
    return [
        target_grpc(measurements, ENDPOINT_BY_KEY[key], concurrency)
        for key in ("mp-mnist", "mp-mnist-batched")
        for concurrency in GRPC_CONCURRENCIES
    ]


def targets(
    measurements: Measurements,
    cells: Mapping[CellKey, Cell],
    engines: Mapping[str, EngineResult],
    settings: Settings,
) -> list[TargetResult]:
    """Every target, checked against this run (or marked not measured)."""
    results = []
    if MNIST in engines:
        results += [target_mnist_throughput(cells), target_mnist_latency(measurements)]
    else:
        results += [
            not_measured(
                "(a) mnist V2 JSON, batching, concurrency 32",
                f">= {TARGET_MNIST_RPS:.0f} req/s and >= {TARGET_MNIST_RATIO:.2f}x",
                MNIST,
            ),
            not_measured(
                "(b) mnist V2 JSON, batching, concurrency 1",
                f"<= {TARGET_LATENCY_GAP_US:.0f} us",
                MNIST,
            ),
        ]
    if MINILM in engines:
        results.append(target_minilm(cells, engines[MINILM]))
    else:
        results.append(
            not_measured(
                "(c) MiniLM V2 JSON, concurrency 16", f">= {TARGET_MINILM_FRACTION:.0%}", MINILM
            )
        )
    if MNIST in engines:
        results += [
            target_binary(measurements, ENDPOINT_BY_KEY[key], concurrency)
            for key in ("mp-mnist", "mp-mnist-batched")
            for concurrency in TF_CONCURRENCIES
        ]
    else:
        results.append(not_measured("(d) mnist V2 binary vs V2 JSON", BINARY_GOAL, MNIST))
    return results + grpc_targets(measurements, settings)


def verdict(target: TargetResult) -> str:
    """A target's result in words."""
    if target.met is None:
        return "not measured"
    return "met" if target.met else "NOT MET"


def target_rows(results: Sequence[TargetResult]) -> list[TableRow]:
    """The targets as table rows."""
    return [[t.name, t.measured, t.goal, verdict(t)] for t in results]


TARGET_HEADERS = ["target", "measured", "goal", "result"]


def target_summary(results: Sequence[TargetResult]) -> str:
    """How many of the measured targets were met."""
    measured = [t for t in results if t.met is not None]
    met = sum(1 for t in measured if t.met)
    return f"{met} of {len(measured)} measured targets met."


# --------------------------------------------------------------------------- the report


def cpu_model() -> str:
    """The CPU model name from /proc/cpuinfo."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def git_revision() -> str:
    """The checked-out commit, marked dirty if the working tree has changes."""

    def git(*args: str) -> str:
        completed = subprocess.run(["git", *args], capture_output=True, text=True, check=False)
        return completed.stdout.strip()

    revision = git("rev-parse", "--short", "HEAD") or "unknown"
    return revision + (" (with uncommitted changes)" if git("status", "--porcelain") else "")


def package_version(name: str) -> str:
    """An installed package's version, or "not installed"."""
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def wrk_version() -> str:
    """wrk's version line."""
    completed = subprocess.run(["wrk", "--version"], capture_output=True, text=True, check=False)
    first = (completed.stdout or completed.stderr).splitlines()
    return first[0].split(" Copyright")[0].strip() if first else "unknown"


def perf_analyzer_version(settings: Settings) -> str:
    """Which perf_analyzer measured, from the recipe ``make tools`` records beside it."""
    if settings.perf_analyzer is None:
        return f"not used ({settings.perf_analyzer_note})"
    stamp = settings.perf_analyzer.parent / ".stamp"
    with contextlib.suppress(OSError):
        for part in stamp.read_text().split():
            if part.startswith("tritonclient="):
                return f"the binary in tritonclient {part.split('=', 1)[1]}'s wheel"
    return str(settings.perf_analyzer)


def machine_lines(load: tuple[LoadAverage, LoadAverage], settings: Settings) -> list[str]:
    """The machine and software the numbers were measured on, as markdown bullets."""
    before, after = (", ".join(f"{v:.2f}" for v in sample) for sample in load)
    return [
        f"- CPUs: {os.cpu_count()} ({cpu_model()}); servers and the engine pinned to CPU "
        f"{SERVER_CPU}, the load generators (wrk, perf_analyzer) to CPU {LOAD_CPU}",
        f"- Load average (1, 5, 15 min) before the run: {before}; after: {after}. Other "
        "processes on this machine share the two CPUs, so expect noise",
        f"- {platform.platform()}",
        f"- Python {platform.python_version()}, onnxruntime {package_version('onnxruntime')}, "
        f"torch {package_version('torch')}, numpy {package_version('numpy')}, "
        f"uvicorn {package_version('uvicorn')}",
        f"- modelport {package_version('modelport')}, commit {git_revision()}",
        f"- wrk: {wrk_version()}",
        f"- perf_analyzer: {perf_analyzer_version(settings)}",
    ]


def noise_line(measurements: Measurements) -> str:
    """How much of the server CPU other processes took, and how steady the CPU's speed was."""
    shares = [r.foreign_cpu for runs in measurements.results.values() for r in runs]
    text = (
        f"While cells were measured, CPU {SERVER_CPU} spent a median of "
        f"{statistics.median(shares):.0%} (at most {max(shares):.0%}) of its time outside the "
        "server under test: other processes, interrupts and kernel work not charged to it."
    )
    speeds = []
    for key, runs in measurements.engines.items():
        p50s = [engine.p50_us for engine in runs]
        name = ENGINE_BY_KEY[key].name
        speeds.append(f"{name} {format_us(min(p50s))} to {format_us(max(p50s))}")
    return (
        f"{text} The raw engine's batch-1 p50, measured at the start of each round, ranged "
        f"{'; '.join(speeds)}: a gauge of the CPU's speed over the run, which a virtual "
        "machine's neighbours can change without showing up in the figure above."
    )


FAMILY_INTROS = {
    MNIST: """\
One mnist image (784 random float32, fixed seed) in, ten class scores out. `modelport` serves
the model without dynamic batching (`mnist`), `modelport + batching` the same model with
`dynamic_batching: {max_batch_size: 64, max_queue_delay_us: 2000}` (`mnist_batched`). *Ratio
to floor echo* compares requests/s with the floor's echo endpoint at the same concurrency (V2
rows with echo V2 JSON, TF rows with echo TF JSON); the floor has no gRPC, so gRPC rows have
none. *vs V2 JSON* compares requests/s with the same server's V2 JSON row at the same
concurrency. V2 gRPC and TF gRPC rows are measured with perf_analyzer, the others with wrk.""",
    TABULAR: """\
examples/build_models.py's `tabular` model: two inputs of two dtypes, `features` (4 random
float32, fixed seed) and `category` (one INT64 id), in; two outputs, `probabilities` (3 floats)
and `score` (1 float), out. `modelport` serves it without dynamic batching. The request is tiny,
so these rows show what the protocols cost per tensor rather than per byte. The floor's echo
endpoint answers the same JSON requests; the floor's `ort` mode cannot read this model's TF
requests, so it is left out. There is no TF gRPC row: perf_analyzer's TF Serving client sends
INT64 values in `bool_val`, which modelport rightly refuses. Columns as for mnist.""",
    MINILM: f"""\
all-MiniLM-L6-v2 built by `examples/build_minilm.py`: one request of {MINILM_SEQ_LEN} token ids
(random, fixed seed, in [{MINILM_TOKEN_LOW}, {MINILM_TOKEN_HIGH})) and an all-ones attention
mask, asking for the `{MINILM_OUTPUT}` output ({MINILM_HIDDEN} floats). `modelport` serves
it without dynamic batching (`minilm`), `modelport + batching` with `config.yaml` as built
(padding on, `max_batch_size: {MINILM_MAX_BATCH}`; `minilm_batched`). *Ratio to raw best rows/s*
compares requests/s with the raw engine's rows/s at its best batch size (table below): the most
this CPU can compute, with or without batching.""",
    MINILM_INT8: f"""\
MiniLM's request ({MINILM_SEQ_LEN} random token ids, an all-ones mask, asking for
`{MINILM_OUTPUT}`) sent to two builds of the encoder that answer `{MINILM_OUTPUT}` only, so
both do the same work. `fp32` (`{MINILM_FP32_MODEL}`) is `examples/build_minilm.py`'s graph
with `last_hidden_state` dropped from its outputs; `int8` (`{MINILM_INT8_MODEL}`) is that file
quantized by `modelport quantize --mode dynamic-int8 --min-cosine {MINILM_MIN_COSINE:g}`, its
sample {MINILM_SAMPLE_ROWS} rows of token ids drawn like the request's (the request's own row
first). Both are served with `minilm`'s `config.yaml`, without and with dynamic batching
(`*_batched`); each row's overhead and ratio use its own build's raw engine. Columns as for
MiniLM.""",
    TORCHSCRIPT: f"""\
An MLP shaped like mnist's ({MNIST_FEATURES} float32 in, {MNIST_CLASSES} scores out;
{MNIST_FEATURES} -> {TORCHSCRIPT_HIDDEN}, ReLU -> {MNIST_CLASSES}, softmax), weights from
`torch.manual_seed({SEED})`, traced with `torch.jit.trace` and served from `model.pt` by
modelport's TorchScript runtime without dynamic batching (`config.yaml` declares `images` FP32
[-1, {MNIST_FEATURES}] and `scores` FP32 [-1, {MNIST_CLASSES}]). A second modelport process
serves it, so that the ONNX models' server never imports PyTorch. The request is mnist's. The
raw engine is `torch.jit.load` and forward() in a loop under `torch.inference_mode()`, with
`torch.set_num_threads(1)`. *Ratio to raw batch-1 rows/s* compares requests/s with the engine's
rows/s at batch 1: the most a server without batching could answer on this CPU.""",
}

SUMMARY_TITLE = "modelport next to the raw engine: MiniLM fp32 and int8, TorchScript"
SUMMARY_INTRO = f"""\
For MiniLM fp32 and int8 and the TorchScript MLP, modelport's latency with one request in
flight (p50 at concurrency {LATENCY_CONCURRENCY}) and throughput with the server saturated
(requests/s at concurrency {THROUGHPUT_CONCURRENCY}), beside the raw engine's batch-1 p50 and
rows/s. The ratios are medians of per-round ratios, so they need not equal the quotient of the
medians shown: *p50 / raw* is how much longer a request takes than the bare engine call,
*requests/s / raw* how much of the engine's batch-1 throughput the server delivers. The last
column is the engine's best rows/s over the batch sizes measured, and that batch size."""

INT8_INTRO = """\
fp32 and int8 side by side, each figure the median of the rounds. *int8 / fp32* is the median of
per-round ratios: below 1.00x, int8 is faster (p50) or smaller (the file); above 1.00x, it
computes or answers more (rows/s, requests/s)."""


HOW_TO_READ = """\
Every row sends the same batch-1 request over keep-alive connections, from a load generator on
CPU 1 (`wrk` for HTTP, perf_analyzer for gRPC) to a server confined to CPU 0. *requests/s*,
*p50* and *p99* are each the median of the rounds; the last column shows how far requests/s
spread between rounds, the noise to allow for on this shared machine. *Serving overhead* is
the row's p50 minus the raw engine's batch-1 p50 for the same model: time spent on HTTP or
gRPC, parsing, validation, scheduling and encoding rather than in the model (at higher
concurrency it is mostly queueing). Ratios are medians of per-round ratios (the two figures of
a pair are measured minutes apart at most, within one round), so they need not equal the
quotient of the two medians.

The floor's echo endpoint parses the JSON body and answers a fixed response without running the
model: roughly the most a Python JSON endpoint does on this CPU, so 1.00x would mean the model
and everything else cost nothing. V2 binary rows are compared with echo V2 JSON too; binary
skips parsing 16 KB of JSON, so it can pass 1.00x. *floor (ort)* runs onnxruntime inline on
every request: the bar for a naive server doing the same work. The floor has no binary tensor
support and no gRPC, and does not serve MiniLM. The raw engine rows are `session.run` in a
loop in one process (1/mean call time as requests/s), one intra-op thread, with no HTTP at
all (for TorchScript, forward() with one thread, its inputs already tensors); modelport also
runs one thread per engine call when pinned to one CPU.

gRPC rows are measured with Triton's perf_analyzer (wrk does not speak gRPC): synchronous
calls, one thread per concurrent request. It counts windows of at least N requests (N sized
from a short calibration run so that 3 windows take about a cell's duration) until 3 windows in
a row agree, and reports those 3. V2 gRPC is
`ModelInfer` with the tensors in `raw_input_contents`; TF gRPC is `Predict` with the values in
the TensorProto's typed field (`float_val`), which is what perf_analyzer's TF Serving client
sends (not `tensor_content`). To tell the protocol apart from the load generator, the
cross-check table sends mnist's V2 binary request with perf_analyzer too (its default for HTTP),
next to wrk's figures for the same cells.

With one CPU, batching can only help as far as the engine's rows/s grow with the batch size
(the raw engine tables): a lot for mnist, little or nothing for MiniLM. p99 is the figure most
disturbed by other processes taking CPU 0 (see the noise line); compare p99s only within one
run.
"""


CROSS_CHECK_INTRO = """\
The same modelport cells measured by both load generators: mnist's V2 binary request sent by
wrk and by perf_analyzer, then V2 gRPC (perf_analyzer). *vs wrk, V2 binary* is the median of
per-round ratios to wrk's V2 binary figure for the same server and concurrency. Where the two
load generators agree on V2 binary, the gRPC rows compare with wrk's HTTP rows directly; where
they do not, compare gRPC with perf_analyzer's V2 binary row."""


def cell_duration_text(settings: Settings) -> str:
    """How long cells ran, in words."""
    text = f"{settings.duration_s} s per cell"
    if any(family in MINILM_FAMILIES for family in settings.families):
        text += f" ({settings.cell_seconds(MINILM)} s for MiniLM)"
    return text


@dataclass(frozen=True)
class Section:
    """One family's part of the report."""

    family: str
    table: str  # the family's markdown table
    engines: tuple[tuple[Engine, EngineResult], ...]  # each engine's rows/s by batch size
    extra: str = ""  # markdown after those (minilm_int8: fp32 and int8 side by side)


def section_markdown(section: Section) -> list[str]:
    """A family's part of the report, as lines."""
    parts = [
        f"## {FAMILY_TITLES[section.family]}",
        "",
        FAMILY_INTROS[section.family],
        "",
        section.table,
        "",
    ]
    for spec, engine in section.engines:
        parts += [
            f"Raw engine throughput by batch size ({spec.name}; {spec.description}, "
            f"CPU {SERVER_CPU}):",
            "",
            engine_batch_table(engine),
            "",
        ]
    if section.extra:
        parts += [section.extra, ""]
    return parts


def int8_markdown(measurements: Measurements) -> str:
    """minilm_int8's extra part: the gate's figures, then fp32 and int8 side by side."""
    lines = ["### int8 next to fp32", ""]
    if measurements.gate is not None:
        lines += [f"{gate_text(measurements.gate)}.", ""]
    rows = int8_rows(measurements, measurements.gate)
    table = markdown_table(INT8_HEADERS, rows, ["---", "---:", "---:", "---:"])
    return "\n".join([*lines, INT8_INTRO, "", table])


def render_report(
    settings: Settings,
    *,
    command: str,
    started: dt.datetime,
    elapsed_s: float,
    sections: Sequence[Section],
    engine_summary: str | None,
    cross_check: str | None,
    target_table: str,
    summary: str,
    load: tuple[LoadAverage, LoadAverage],
    noise: str,
) -> str:
    """The whole of docs/benchmarks.md; ``engine_summary`` is the summary's markdown table."""
    parts = [
        "<!-- Generated by benchmarks/run.py; do not edit by hand. Re-run the command below "
        "to regenerate it. -->",
        "",
        "# Benchmarks",
        "",
        "modelport, with and without dynamic batching, over HTTP (KServe V2 and TF Serving",
        "REST) and gRPC, against the raw engine (onnxruntime, or PyTorch, in-process) and the",
        "reference floor server (`floor_server.py`: the cheapest Python JSON endpoint, and a naive",
        "onnxruntime server), on batch-1 requests to a small MLP (mnist), a model with two inputs",
        "and two outputs (tabular), a transformer (all-MiniLM-L6-v2) in fp32 and quantized to",
        "int8, and an mnist-shaped MLP served from TorchScript. See",
        "[benchmarks/README.md](../benchmarks/README.md) for the method.",
        "",
        "Reproduce (from the repository root; needs `wrk`, `taskset` and, for the gRPC rows,",
        "perf_analyzer from `make tools`):",
        "",
        "```",
        command,
        "```",
        "",
        f"Measured {started:%Y-%m-%d %H:%M %Z}, {plural(settings.rounds, 'round')}, "
        f"{cell_duration_text(settings)}, run time {elapsed_s / 60:.1f} min.",
        "",
        "## Machine",
        "",
        *machine_lines(load, settings),
        "",
    ]
    for section in sections:
        parts += section_markdown(section)
    if engine_summary is not None:
        parts += [f"## {SUMMARY_TITLE}", "", SUMMARY_INTRO, "", engine_summary, ""]
    if cross_check is not None:
        parts += [
            "## Load generators cross-checked (mnist, modelport)",
            "",
            CROSS_CHECK_INTRO,
            "",
            cross_check,
            "",
        ]
    elif settings.perf_analyzer is None and MNIST in settings.families:
        parts += [f"No gRPC rows in this run: {settings.perf_analyzer_note}.", ""]
    parts += [
        noise,
        "",
        "## Targets",
        "",
        "Computed from this run's measurements. Ratios and differences between two cells are "
        "medians of per-round pairs, so they need not match the quotient or difference of the "
        "medians shown.",
        "",
        target_table,
        "",
        summary,
        "",
        "## How to read it",
        "",
        HOW_TO_READ.rstrip(),
        "",
    ]
    return "\n".join(parts)


# --------------------------------------------------------------------------- entry point


def parse_models(text: str) -> tuple[str, ...]:
    """``--models``: a comma-separated subset of FAMILIES, in canonical order (``-`` may stand
    for ``_``)."""
    wanted = {name.strip().lower().replace("-", "_") for name in text.split(",") if name.strip()}
    unknown = wanted - set(FAMILIES)
    if unknown or not wanted:
        raise argparse.ArgumentTypeError(
            f"choose from {', '.join(FAMILIES)} (comma-separated), not {text!r}"
        )
    return tuple(family for family in FAMILIES if family in wanted)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(
        description="Benchmark modelport against the raw engines and the floor server."
    )
    parser.add_argument(
        "--duration",
        type=int,
        default=None,
        help=f"seconds per cell (default {DEFAULT_DURATION_S}; {QUICK_DURATION_S} with --quick)",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=None,
        help=f"rounds, median taken (default {DEFAULT_ROUNDS}; {QUICK_ROUNDS} with --quick)",
    )
    parser.add_argument(
        "--models",
        type=parse_models,
        default=FAMILIES,
        help=f"models to benchmark, comma-separated (default {','.join(FAMILIES)})",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a 2-3 minute smoke run: 1 round of 1 s cells, a shorter engine probe; writes no "
        "report unless --output is given",
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=None,
        help=f"markdown report (default {DEFAULT_OUTPUT}; none with --quick)",
    )
    parser.add_argument(
        "--warmup", type=int, default=DEFAULT_WARMUP_S, help="warm-up seconds per endpoint"
    )
    parser.add_argument(
        "--calls",
        type=int,
        default=None,
        help=f"timed batch-1 calls of the mnist, tabular and TorchScript engines (default "
        f"{DEFAULT_CALLS}; {QUICK_CALLS} with --quick)",
    )
    parser.add_argument(
        "--floor-server",
        type=Path,
        default=DEFAULT_FLOOR,
        help=f"floor_server.py (default {DEFAULT_FLOOR}, or $MODELPORT_FLOOR_SERVER)",
    )
    parser.add_argument(
        "--perf-analyzer",
        type=Path,
        default=DEFAULT_PERF_ANALYZER,
        help="perf_analyzer, the load generator for the gRPC cells (default "
        f"{display_path(DEFAULT_PERF_ANALYZER)} from `make tools`, or $MODELPORT_PERF_ANALYZER); "
        "if it is missing, those cells are skipped",
    )
    parser.add_argument(
        "--no-perf-analyzer",
        action="store_true",
        help="skip the gRPC and perf_analyzer cells",
    )
    parser.add_argument("--engine-probe", metavar="MODEL", help=argparse.SUPPRESS)
    parser.add_argument("--engine-family", choices=FAMILIES, help=argparse.SUPPRESS)
    parser.add_argument(
        "--engine-runtime", choices=tuple(ENGINE_CALLS), default=ONNXRUNTIME, help=argparse.SUPPRESS
    )
    parser.add_argument("--batch-seconds", type=float, default=0.5, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.duration is None:
        args.duration = QUICK_DURATION_S if args.quick else DEFAULT_DURATION_S
    if args.rounds is None:
        args.rounds = QUICK_ROUNDS if args.quick else DEFAULT_ROUNDS
    if args.calls is None:
        args.calls = QUICK_CALLS if args.quick else DEFAULT_CALLS
    if args.duration < 1 or args.rounds < 1 or args.warmup < 0 or args.calls < 10:
        parser.error("--duration and --rounds must be >= 1, --warmup >= 0, --calls >= 10")
    return args


def display_path(path: Path) -> str:
    """``path`` relative to the repository root when it is inside it."""
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def reproduce_command(settings: Settings) -> str:
    """The command line that reproduces this run."""
    parts = [".venv/bin/python", "benchmarks/run.py"]
    if settings.quick:
        parts.append("--quick")
    default_duration = QUICK_DURATION_S if settings.quick else DEFAULT_DURATION_S
    default_rounds = QUICK_ROUNDS if settings.quick else DEFAULT_ROUNDS
    default_calls = QUICK_CALLS if settings.quick else DEFAULT_CALLS
    if not settings.quick or settings.duration_s != default_duration:
        parts += ["--duration", str(settings.duration_s)]
    if not settings.quick or settings.rounds != default_rounds:
        parts += ["--rounds", str(settings.rounds)]
    if settings.families != FAMILIES:
        parts += ["--models", ",".join(settings.families)]
    if settings.output is not None:
        parts += ["--output", display_path(settings.output)]
    if settings.warmup_s != DEFAULT_WARMUP_S:
        parts += ["--warmup", str(settings.warmup_s)]
    if settings.calls != default_calls:
        parts += ["--calls", str(settings.calls)]
    if settings.floor != DEFAULT_FLOOR:
        parts += ["--floor-server", str(settings.floor)]
    if settings.perf_analyzer is None and settings.perf_analyzer_note == NO_PERF_ANALYZER_NOTE:
        parts.append("--no-perf-analyzer")
    elif settings.perf_analyzer is not None and settings.perf_analyzer != DEFAULT_PERF_ANALYZER:
        parts += ["--perf-analyzer", display_path(settings.perf_analyzer)]
    return shlex.join(parts)


NO_PERF_ANALYZER_NOTE = "skipped with --no-perf-analyzer"


def find_perf_analyzer(path: Path, *, skip: bool) -> tuple[Path | None, str]:
    """perf_analyzer's path, or None and why its cells are skipped."""
    if skip:
        return None, NO_PERF_ANALYZER_NOTE
    if path.is_file() and os.access(path, os.X_OK):
        return path, ""
    return None, f"perf_analyzer not found at {display_path(path)}; {MAKE_TOOLS_HINT}"


def raise_on_sigterm() -> None:
    """Turn SIGTERM into SystemExit so the servers are stopped by the finally blocks."""

    def handler(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, handler)


def estimate_minutes(settings: Settings) -> float:
    """A rough run time: the cells, the warm-ups and calibrations, and the engine probes."""
    groups = settings_plan(settings)
    # perf_analyzer often needs a window or two more than 3 before they agree, and starts slower.
    extra = {WRK: 0.25, PERF_ANALYZER: 1.0}
    cells = settings.rounds * sum(
        len(g.endpoints)
        * (settings.cell_seconds(g.family) * (1.5 if g.protocol in PA_PROTOCOLS else 1.0)
           + extra[PERF_ANALYZER if g.protocol in PA_PROTOCOLS else WRK])
        for g in groups
    )  # fmt: skip
    warmups = len({(key, g.protocol) for g in groups for key in g.endpoints})
    calibrations = sum(len(g.endpoints) for g in groups if g.protocol in PA_PROTOCOLS)
    cells += calibrations * 1.5
    engine_s = {ONNXRUNTIME: 4.0, TORCH: 6.0}
    engines = settings.rounds * sum(
        8.0 if engine.family in MINILM_FAMILIES else engine_s[engine.runtime]
        for engine in chosen_engines(settings.families)
    )
    build = 15 if MINILM_INT8 in settings.families else 0  # the int8 model and its gate
    return (cells + warmups * (settings.warmup_s + 0.3) + engines + build + 15) / 60


def report_sections(
    settings: Settings,
    *,
    groups: Sequence[Group],
    protocols: Mapping[tuple[str, str], Protocol],
    measurements: Measurements,
    cells: Mapping[CellKey, Cell],
    engines: Mapping[str, EngineResult],
) -> list[Section]:
    """Each family's tables, printed as text and returned for the report."""
    sections = []
    for family in settings.families:
        headers = table_headers(family)
        rows = family_rows(family, groups, protocols, cells, engines)
        print(f"\n{FAMILY_TITLES[family]}\n\n{text_table(headers, rows)}")
        extra = ""
        if family == MINILM_INT8:
            extra = int8_markdown(measurements)
            side = text_table(INT8_HEADERS, int8_rows(measurements, measurements.gate))
            print(f"\nMiniLM int8 next to fp32\n\n{side}")
        sections.append(
            Section(
                family,
                family_markdown(headers, rows),
                tuple((spec, engines[spec.key]) for spec in family_engines(family)),
                extra,
            )
        )
    return sections


def run(settings: Settings) -> None:
    """Benchmark, print the tables and targets, and write the report."""
    check_tools()
    if (
        any(family in FLOOR_FAMILIES for family in settings.families)
        and not settings.floor.is_file()
    ):
        raise SystemExit(
            f"floor server not found at {settings.floor}; "
            "pass --floor-server PATH or set MODELPORT_FLOOR_SERVER"
        )
    if not (Path(sys.executable).parent / "modelport").is_file():
        raise SystemExit("modelport is not installed next to this Python; run `make test` first")
    if TORCHSCRIPT in settings.families and importlib.util.find_spec("torch") is None:
        raise SystemExit(
            "the torchscript model needs PyTorch: pip install 'modelport[torch]' "
            "(or leave it out with --models)"
        )
    groups = settings_plan(settings)
    if settings.perf_analyzer is None and uses_perf_analyzer(plan(settings.families)):
        print(
            f"gRPC and perf_analyzer cells skipped: {settings.perf_analyzer_note}", file=sys.stderr
        )
    print(
        f"{cell_count(groups)} cells x {plural(settings.rounds, 'round')}, "
        f"{cell_duration_text(settings)}: "
        f"about {estimate_minutes(settings):.0f} min",
        file=sys.stderr,
    )
    started = dt.datetime.now().astimezone()
    load_before = os.getloadavg()
    begin = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="modelport-bench-") as tmp:
        measurements = benchmark(settings, Path(tmp))
    elapsed_s = time.monotonic() - begin
    protocols = make_protocols(settings.families)
    cells = aggregate(measurements)
    engines = {key: median_engine(runs) for key, runs in measurements.engines.items()}
    sections = report_sections(
        settings,
        groups=groups,
        protocols=protocols,
        measurements=measurements,
        cells=cells,
        engines=engines,
    )
    engine_summary = None
    rows = summary_rows(groups, protocols, measurements, cells, engines)
    if rows:
        print(f"\n{SUMMARY_TITLE}\n\n{text_table(SUMMARY_HEADERS, rows)}")
        engine_summary = markdown_table(SUMMARY_HEADERS, rows, SUMMARY_ALIGN)
    cross_rows = cross_check_rows(groups, cells, measurements)
    cross_check = None
    if cross_rows:
        title = "Load generators cross-checked (mnist, modelport)"
        print(f"\n{title}\n\n{text_table(CROSS_CHECK_HEADERS, cross_rows)}")
        align = ["---", "---", "---:", "---", *["---:"] * 4]
        cross_check = markdown_table(CROSS_CHECK_HEADERS, cross_rows, align)
    noise = noise_line(measurements)
    print(f"\n{noise}")
    checked = targets(measurements, cells, engines, settings)
    summary = target_summary(checked)
    print(f"\nTargets\n\n{text_table(TARGET_HEADERS, target_rows(checked))}\n\n{summary}")
    command = reproduce_command(settings)
    message = f"\nfinished in {elapsed_s:.0f}s ({elapsed_s / 60:.1f} min)"
    if settings.output is not None:
        report = render_report(
            settings,
            command=command,
            started=started,
            elapsed_s=elapsed_s,
            sections=sections,
            engine_summary=engine_summary,
            cross_check=cross_check,
            target_table=markdown_table(
                TARGET_HEADERS, target_rows(checked), ["---"] * len(TARGET_HEADERS)
            ),
            summary=summary,
            load=(load_before, os.getloadavg()),
            noise=noise,
        )
        settings.output.parent.mkdir(parents=True, exist_ok=True)
        settings.output.write_text(report)
        message += f"; wrote {display_path(settings.output)}"
    print(f"{message}; reproduce with: {command}")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; also serves the hidden ``--engine-probe`` mode used for the engine rows."""
    args = parse_args(argv)
    if args.output is not None:
        output: Path | None = args.output.resolve()
    else:
        output = None if args.quick else ROOT / DEFAULT_OUTPUT
    floor = args.floor_server.resolve()
    perf_analyzer, perf_analyzer_note = find_perf_analyzer(
        args.perf_analyzer.absolute(), skip=args.no_perf_analyzer
    )
    os.chdir(ROOT)  # the build scripts and wrk's script are addressed relative to the root
    if args.engine_probe:
        family = args.engine_family or MNIST
        probe = engine_probe(
            family, args.engine_probe, args.calls, args.batch_seconds, args.engine_runtime
        )
        print(json.dumps(probe))
        return 0
    raise_on_sigterm()
    settings = Settings(
        duration_s=args.duration,
        rounds=args.rounds,
        warmup_s=args.warmup,
        calls=args.calls,
        families=args.models,
        floor=floor,
        output=output,
        quick=args.quick,
        perf_analyzer=perf_analyzer,
        perf_analyzer_note=perf_analyzer_note,
    )
    try:
        run(settings)
    except BenchError as error:
        print(f"benchmark failed: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted; servers stopped", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
