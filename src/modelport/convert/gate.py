"""The parity gate every step goes through: build, compare, report, then publish or discard.

A step builds its result in a hidden folder beside the output folder. The gate runs the source
and the result on the same inputs, times both, prints the table, and moves the folder into place
(with ``model.onnx`` and ``report.json``) only if every output is within tolerance; otherwise the
build folder is removed and the output folder is left as it was.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

from modelport.convert.atomic import OutputFolder
from modelport.convert.errors import GATE_FAILED
from modelport.convert.latency import median_latency_s
from modelport.convert.parity import compare_outputs
from modelport.convert.progress import Phases
from modelport.convert.report import REPORT_FILENAME, ModelFacts, Report, write_report
from modelport.convert.runner import Feeds, Runnable, onnx_runnable
from modelport.convert.samples import (
    cast_feeds,
    generate_feeds,
    load_sample_file,
    match_feeds,
    parse_input_shapes,
)
from modelport.convert.table import print_report
from modelport.convert.tolerance import Tolerance

__all__ = ["RESULT_FILENAME", "Build", "Builder", "GateOptions", "run_gate"]

RESULT_FILENAME = "model.onnx"


@dataclass(frozen=True)
class GateOptions:
    """What every step shares: where to write, which inputs, how long to time."""

    output: Path
    force: bool = False
    sample: Path | None = None
    input_shapes: tuple[str, ...] = ()
    batch_size: int = 16
    seed: int = 0
    latency_runs: int = 20
    quiet: bool = False
    command: tuple[str, ...] = ()
    #: Also write the report here, whether the gate passes or not (for CI logs).
    report_file: Path | None = None


@dataclass
class Build:
    """What a step left in the build folder, and the source to compare it with.

    ``feeds`` are the inputs the step already chose (PyTorch needs its example before
    exporting); when None, the gate reads ``--sample`` or generates inputs.
    """

    source: Runnable
    result_path: Path
    details: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    feeds: Feeds | None = None
    feeds_origin: str = ""


#: A step: given the build folder and the progress display, write the result and say what it is.
Builder = Callable[[Path, Phases], Build]


def run_gate(
    step: str,
    builder: Builder,
    tolerance: Tolerance,
    options: GateOptions,
    *,
    console: Console,
    progress_console: Console,
) -> int:
    """Run one step through the gate; return the exit code (0 passed, 1 refused)."""
    phases = Phases(progress_console, enabled=not options.quiet)
    with OutputFolder(options.output, options.force) as folder:
        build = builder(folder.path, phases)
        with phases("Loading the result in onnxruntime"):
            result = onnx_runnable(build.result_path, RESULT_FILENAME)
        feeds, samples = _feeds(build, result, options)
        with phases("Running the source and the result on the samples"):
            expected = build.source.run(cast_feeds(feeds, build.source.inputs))
            got = result.run(cast_feeds(feeds, result.inputs))
        names = [spec.name for spec in result.outputs or ()]
        outputs, pairing = compare_outputs(expected, got, names, tolerance)
        with phases(f"Timing the source and the result ({options.latency_runs} runs each)"):
            source_s = _latency(build.source, feeds, options.latency_runs)
            result_s = _latency(result, feeds, options.latency_runs)
        report = Report(
            step=step,
            command=options.command,
            passed=all(o.passed for o in outputs),
            source=_facts(build.source, source_s),
            result=_facts(result, result_s, str(options.output / RESULT_FILENAME)),
            tolerance=tolerance,
            outputs=outputs,
            samples=samples,
            latency_runs=options.latency_runs,
            output_dir=str(options.output),
            details=build.details,
            notes=[*build.notes, *([pairing] if pairing else [])],
        )
        if report.passed:
            write_report(report, folder.path / REPORT_FILENAME)
            folder.commit()
    if options.report_file is not None:
        write_report(report, options.report_file)
    print_report(report, console)
    return 0 if report.passed else GATE_FAILED


def _latency(model: Runnable, feeds: Feeds, runs: int) -> float | None:
    return median_latency_s(model.run, cast_feeds(feeds, model.inputs), runs)


def _facts(model: Runnable, latency_s: float | None, path: str | None = None) -> ModelFacts:
    return ModelFacts(
        model.label,
        path or str(model.path),
        model.size_bytes,
        latency_s,
        model.inputs,
        model.outputs,
    )


def _feeds(build: Build, result: Runnable, options: GateOptions) -> tuple[Feeds, dict[str, Any]]:
    """The parity inputs: the step's, the user's sample file, or seeded random data."""
    specs = build.source.inputs or result.inputs or ()
    if build.feeds is not None:
        feeds, origin = build.feeds, build.feeds_origin
    elif options.sample is not None:
        names = [spec.name for spec in specs]
        feeds = match_feeds(load_sample_file(options.sample), names, str(options.sample))
        origin = str(options.sample)
    else:
        shapes = parse_input_shapes(options.input_shapes)
        feeds = generate_feeds(
            specs, batch_size=options.batch_size, seed=options.seed, shapes=shapes
        )
        origin = f"random inputs (seed {options.seed})"
    return feeds, {"origin": origin, "seed": options.seed, "inputs": _describe(feeds)}


def _describe(feeds: Feeds) -> dict[str, Any]:
    return {
        name: {"shape": list(array.shape), "dtype": str(array.dtype)}
        for name, array in feeds.items()
    }
