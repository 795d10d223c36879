"""One ``modelport bench`` run from start to end: ask, prepare, probe, measure, report.

``run_bench`` returns the exit code: 0 when every request succeeded, 1 when any failed or the
server could not be measured, 2 when the command line was wrong, 130 when interrupted.
"""

from __future__ import annotations

import datetime as dt
import os
import platform
from typing import Any

import numpy as np
from rich.console import Console

from modelport.bench import plot
from modelport.bench.encoding import Encoded, encode_request
from modelport.bench.errors import BenchError, ServerError
from modelport.bench.pool import WorkerPool
from modelport.bench.progress import StepProgress
from modelport.bench.report import print_table, write_csv, write_json
from modelport.bench.runner import plan_step, run_step_blocking
from modelport.bench.server import ModelSpec, error_message, exchange, fetch_model
from modelport.bench.settings import BenchSettings
from modelport.bench.stats import StepSummary, summarize
from modelport.bench.workload import generate_inputs, load_inputs

__all__ = ["run_bench"]

INTERRUPTED = 130
Inputs = dict[str, np.ndarray[Any, Any]]
_PIPE_WIDTH = 120


def run_bench(
    settings: BenchSettings, out: Console | None = None, err: Console | None = None
) -> int:
    """Run the benchmark ``settings`` describe, print the results, and return the exit code."""
    out = out or _console(stderr=False)
    err = err or _console(stderr=True)
    try:
        return _run(settings, out, err)
    except BenchError as exc:
        err.print(f"modelport bench: {exc}", markup=False, highlight=False, soft_wrap=True)
        return exc.exit_code
    except KeyboardInterrupt:
        err.print("modelport bench: interrupted")
        return INTERRUPTED


def _console(stderr: bool) -> Console:
    """A console; when it is not a terminal, wide enough for the table without wrapping."""
    console = Console(stderr=stderr)
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console = Console(stderr=stderr, width=_PIPE_WIDTH)
    return console


def _run(settings: BenchSettings, out: Console, err: Console) -> int:
    if settings.plot_path is not None:
        plot.require()
    model, inputs, encoded = _prepare(settings)
    _probe(settings, encoded)
    if not settings.quiet:
        err.print(
            _preamble(settings, model, inputs, encoded),
            highlight=False,
            markup=False,
            soft_wrap=True,
        )
    started = dt.datetime.now(dt.UTC)
    summaries: list[StepSummary] = []
    interrupted = False
    try:
        _measure(settings, encoded, summaries, err)
    except KeyboardInterrupt:
        interrupted = True
        measured = len(summaries)
        err.print(
            f"interrupted: reporting the {measured} step{'s' if measured != 1 else ''} "
            "measured so far"
        )
    title = _title(settings, model)
    print_table(out, summaries, title)
    run = {
        "started": started.isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "model": _model_entry(model, inputs),
        "request_bytes": len(encoded.request.body),
    }
    if settings.json_path is not None:
        write_json(settings.json_path, settings, summaries, run)
    if settings.csv_path is not None:
        write_csv(settings.csv_path, settings, summaries)
    if settings.plot_path is not None and summaries:
        plot.write_plot(settings.plot_path, summaries, title)
    if interrupted:
        return INTERRUPTED
    return 1 if any(s.any_errors for s in summaries) else 0


def _prepare(settings: BenchSettings) -> tuple[ModelSpec, Inputs, Encoded]:
    """Metadata, input tensors and the encoded request."""
    model = fetch_model(settings.target, settings.model, settings.version)
    if settings.input_data is not None:
        inputs = load_inputs(settings.input_data, model)
    else:
        inputs = generate_inputs(
            model, settings.batch_size, settings.shapes, settings.seed, settings.string_length
        )
    encoded = encode_request(settings.protocol, model, inputs, settings.target, settings.version)
    return model, inputs, encoded


def _probe(settings: BenchSettings, encoded: Encoded) -> None:
    """Send the request once and check the answer, so a wrong request fails with one message."""
    request = encoded.request
    status, body = exchange(
        settings.target,
        request.method,
        request.path,
        body=request.body,
        headers=request.headers,
        timeout_s=settings.timeout_s,
    )
    if status != 200:
        raise ServerError(
            f"the server refused the benchmark request ({request.method} {request.path}): "
            f"{status} {error_message(body)}"
        )
    problem = encoded.check(body)
    if problem is not None:
        raise ServerError(f"the server's answer is not what {settings.protocol} expects: {problem}")


def _measure(
    settings: BenchSettings, encoded: Encoded, summaries: list[StepSummary], err: Console
) -> None:
    """Run every step in order, appending each step's summary as soon as it is measured."""
    wire = encoded.request.wire_bytes(settings.target)
    pool = WorkerPool(settings.processes) if settings.processes > 1 else None
    try:
        with StepProgress(err, enabled=not settings.quiet) as progress:
            for step in settings.steps:
                plans = plan_step(step, settings, wire, encoded.check)
                progress.begin(
                    step.label, plans[0].start_ns, settings.warmup_s, settings.duration_s
                )
                if pool is None:
                    samples = run_step_blocking(plans[0], progress.update)
                else:
                    samples = pool.run(plans, progress.update)
                summary = summarize(step, samples)
                progress.end(summary.requests_per_s, summary.latency_us["p50"], summary.error_count)
                summaries.append(summary)
    except BaseException:
        if pool is not None:
            pool.terminate()  # a worker mid-step would not read "stop" until its step ends
        raise
    finally:
        if pool is not None:
            pool.close()


def _preamble(settings: BenchSettings, model: ModelSpec, inputs: Inputs, encoded: Encoded) -> str:
    version = f" version {model.version}" if model.version else ""
    tensors = ", ".join(
        f"{spec.name} {spec.datatype} {list(inputs[spec.name].shape)}" for spec in model.inputs
    )
    return (
        f"modelport bench: {model.name}{version} at {settings.target.url} over "
        f"{settings.protocol}; {tensors}; request body {len(encoded.request.body):,} bytes; "
        f"{len(settings.steps)} step{'s' if len(settings.steps) > 1 else ''} of "
        f"{settings.warmup_s:g} s warm-up + "
        f"{settings.duration_s:g} s"
        + (f", {settings.processes} processes" if settings.processes > 1 else "")
        + _cpu_note(settings.processes)
    )


def _cpu_note(processes: int) -> str:
    """A warning when client processes outnumber the CPUs this process may use."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    if cpus and processes > cpus:
        return f" (more processes than the {cpus} CPU(s) available: they will compete)"
    return ""


def _title(settings: BenchSettings, model: ModelSpec) -> str:
    version = f" v{model.version}" if model.version else ""
    batch = "batch from file" if settings.input_data else f"batch {settings.batch_size}"
    return (
        f"{model.name}{version}, {settings.protocol}, {batch}, {settings.duration_s:g} s per step"
    )


def _model_entry(model: ModelSpec, inputs: Inputs) -> dict[str, Any]:
    return {
        "name": model.name,
        "version": model.version,
        "inputs": [
            {"name": s.name, "datatype": s.datatype, "shape": list(inputs[s.name].shape)}
            for s in model.inputs
        ],
        "outputs": [o.name for o in model.outputs],
    }
