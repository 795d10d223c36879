"""The report as a terminal table: sizes, latencies, per-output errors and the verdict."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from modelport.convert.parity import OutputParity
from modelport.convert.report import Report

__all__ = ["format_bytes", "format_seconds", "print_report"]


def format_bytes(size: int) -> str:
    """``532 B``, ``14.2 kB``, ``3.10 MB``: three significant digits, decimal units."""
    value = float(size)
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{size} B" if unit == "B" else f"{value:.3g} {unit}"
        value /= 1000
    raise AssertionError("unreachable")


def format_seconds(seconds: float | None) -> str:
    """``87.5 us``, ``2.26 ms``, ``1.20 s``; ``-`` when not measured."""
    if seconds is None:
        return "-"
    for scale, unit in ((1e-6, "us"), (1e-3, "ms"), (1.0, "s")):
        value = seconds / scale
        if value < 1000 or unit == "s":
            return f"{value:.3g} {unit}"
    raise AssertionError("unreachable")


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.3g}"


def _share(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def _ratio(source: float | None, result: float | None) -> str:
    if not source or result is None:
        return ""
    return f"x{result / source:.2f}"


def _summary(report: Report) -> Table:
    table = Table(title=f"modelport {report.step}", title_justify="left")
    table.add_column("")
    table.add_column("source")
    table.add_column("result")
    table.add_column("result / source", justify="right")
    source, result = report.source, report.result
    table.add_row("model", escape(source.label), escape(result.label), "")
    table.add_row(
        "size",
        format_bytes(source.size_bytes),
        format_bytes(result.size_bytes),
        _ratio(source.size_bytes, result.size_bytes),
    )
    table.add_row(
        f"latency (median of {report.latency_runs})",
        format_seconds(source.latency_s),
        format_seconds(result.latency_s),
        _ratio(source.latency_s, result.latency_s),
    )
    return table


def _parity(report: Report) -> Table:
    tol = report.tolerance
    table = Table(
        title=(
            f"parity on {escape(str(report.samples.get('origin', 'samples')))} "
            f"(atol {tol.atol:g}, rtol {tol.rtol:g}, min agreement {tol.min_agreement:.0%}"
            + (f", min cosine {tol.min_cosine:g}" if tol.min_cosine is not None else "")
            + ")"
        ),
        title_justify="left",
    )
    for column in ("output", "shape", "max abs err", "max rel err", "tolerance used"):
        table.add_column(column, justify="left" if column == "output" else "right")
    table.add_column("top-class agreement", justify="right")
    table.add_column("min cosine", justify="right")
    table.add_column("verdict")
    for output in report.outputs:
        table.add_row(*_parity_row(output))
    return table


def _parity_row(output: OutputParity) -> tuple[str, ...]:
    verdict = "[green]ok[/]" if output.passed else f"[red]FAIL[/]: {escape(str(output.reason))}"
    return (
        escape(output.name),
        "x".join(str(d) for d in output.shape) or "scalar",
        _number(output.max_abs_error),
        _number(output.max_rel_error),
        _share(output.tolerance_used),
        _share(output.agreement),
        _cosine(output.min_cosine),
        verdict,
    )


def _cosine(value: float | None) -> str:
    return "-" if value is None else f"{value:.6f}"


def print_report(report: Report, console: Console) -> None:
    """Print both tables, the notes and the verdict."""
    console.print(_summary(report))
    console.print(_parity(report))
    for note in report.notes:
        console.print(f"note: {escape(note)}", highlight=False)
    if report.passed:
        console.print(
            f"[green]PASSED[/]: {escape(report.output_dir)} holds model.onnx and report.json",
            highlight=False,
        )
    else:
        console.print(
            f"[red]FAILED[/]: the result is outside the tolerance; nothing was written to "
            f"{escape(report.output_dir)}",
            highlight=False,
        )
