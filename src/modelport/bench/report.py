"""The results, written out: a rich table with notes, a JSON document and a CSV file."""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from modelport import __version__
from modelport.bench.settings import BenchSettings
from modelport.bench.stats import LATENCY_KEYS, StepSummary

__all__ = ["CSV_FIELDS", "format_latency", "notes", "print_table", "write_csv", "write_json"]

#: The columns of the CSV report: the step's numbers, then the settings they were measured with.
CSV_FIELDS = (
    "mode",
    "concurrency",
    "rate",
    "requests",
    "window_s",
    "requests_per_s",
    *(f"{key}_us" for key in LATENCY_KEYS),
    "errors",
    "errors_outside_window",
    "late_sends",
    "connections",
    "model",
    "version",
    "protocol",
    "url",
    "batch_size",
    "duration_s",
    "warmup_s",
    "processes",
)


def format_latency(us: float) -> str:
    """Microseconds with three significant digits and a unit: ``87.5 us``, ``2.26 ms``."""
    if math.isnan(us):
        return "-"
    for scale, unit in ((1.0, "us"), (1e3, "ms"), (1e6, "s")):
        value = us / scale
        if value < 1000 or unit == "s":
            digits = 2 if value < 10 else 1 if value < 100 else 0
            return f"{value:.{digits}f} {unit}"
    raise AssertionError("unreachable")


def _step_cell(summary: StepSummary) -> str:
    if summary.step.concurrency is not None:
        return str(summary.step.concurrency)
    return f"{summary.step.value:g}/s"


def print_table(console: Console, summaries: Sequence[StepSummary], title: str) -> None:
    """The results table, one row per step, followed by its notes."""
    rate_mode = bool(summaries) and summaries[0].step.rate is not None
    table = Table(title=title, title_justify="left")
    table.add_column("rate" if rate_mode else "concurrency", justify="right")
    table.add_column("requests/s", justify="right")
    for key in ("p50", "p90", "p99", "p99.9", "max"):
        table.add_column(key, justify="right")
    table.add_column("errors", justify="right")
    if rate_mode:
        table.add_column("sent late", justify="right")
    for summary in summaries:
        cells: list[str | Text] = [
            _step_cell(summary),
            f"{summary.requests_per_s:,.0f}",
            *(format_latency(summary.latency_us[k]) for k in ("p50", "p90", "p99", "p99.9", "max")),
            Text(str(summary.error_count), style="bold red" if summary.error_count else ""),
        ]
        if rate_mode:
            late = f"{summary.late_share:.1%}"
            cells.append(Text(late, style="bold yellow" if summary.fell_behind else ""))
        table.add_row(*cells)
    console.print(table)
    for line in notes(summaries):
        console.print(line, highlight=False, markup=False, soft_wrap=True)


def notes(summaries: Sequence[StepSummary]) -> list[str]:
    """What the table cannot say: errors by kind with an example, and a client that fell behind."""
    lines = []
    for summary in summaries:
        label = summary.step.label
        for kind in sorted(set(summary.errors) | set(summary.other_errors)):
            inside = summary.errors.get(kind, 0)
            outside = summary.other_errors.get(kind, 0)
            where = f"{inside} in the window"
            if outside:
                where += f", {outside} during warm-up or drain"
            example = summary.error_examples.get(kind, "")
            lines.append(f"{label}: {kind}: {where}" + (f"; e.g. {example}" if example else ""))
        if summary.fell_behind:
            lines.append(
                f"{label}: the client fell behind: it sent {summary.late_share:.1%} of requests "
                f"over 1 ms after their time (at most {format_latency(summary.max_send_lag_us)} "
                "late). Latencies include the delay; use --processes or a lower rate."
            )
        if summary.step.rate is not None and summary.requests_per_s < 0.95 * summary.step.rate:
            lines.append(
                f"{label}: the server did not keep up: it answered "
                f"{summary.requests_per_s:,.0f} requests/s, so requests queued "
                f"({summary.wait_share:.0%} waited for one of {summary.connections} connections) "
                "and their latency includes the queueing"
                + (f"; {summary.unsent:,} were still queued at the end" if summary.unsent else "")
                + "."
            )
        elif summary.wait_share > 0.01:
            lines.append(
                f"{label}: {summary.wait_share:.1%} of requests waited for a free connection "
                f"({summary.connections} were open); their latency includes the wait. "
                "If that is --max-connections, raise it."
            )
    return lines


def document(
    settings: BenchSettings, summaries: Sequence[StepSummary], run: dict[str, Any]
) -> dict[str, Any]:
    """The JSON report: versions, settings, what was sent, and every step's numbers."""
    return {
        "modelport_version": __version__,
        **run,
        "settings": settings.describe(),
        "steps": [summary.as_dict() for summary in summaries],
    }


def write_json(
    path: Path, settings: BenchSettings, summaries: Sequence[StepSummary], run: dict[str, Any]
) -> None:
    """Write the JSON report to ``path``."""
    text = json.dumps(document(settings, summaries, run), indent=2, allow_nan=False)
    path.write_text(text + "\n", encoding="utf-8")


def _csv_row(summary: StepSummary, settings: dict[str, Any]) -> dict[str, Any]:
    row: dict[str, Any] = {
        "mode": summary.step.kind,
        "concurrency": summary.step.concurrency if summary.step.concurrency is not None else "",
        "rate": summary.step.rate if summary.step.rate is not None else "",
        "requests": summary.requests,
        "window_s": f"{summary.window_s:.6f}",
        "requests_per_s": f"{summary.requests_per_s:.3f}",
        "errors": summary.error_count,
        "errors_outside_window": sum(summary.other_errors.values()),
        "late_sends": summary.late_sends,
        "connections": summary.connections,
    }
    for key in LATENCY_KEYS:
        value = summary.latency_us[key]
        row[f"{key}_us"] = "" if math.isnan(value) else f"{value:.1f}"
    for key in ("model", "version", "protocol", "url", "batch_size", "duration_s"):
        row[key] = settings[key] if settings[key] is not None else ""
    row.update(warmup_s=settings["warmup_s"], processes=settings["processes"])
    return row


def write_csv(path: Path, settings: BenchSettings, summaries: Sequence[StepSummary]) -> None:
    """Write one CSV row per step, with the settings repeated on every row."""
    described = settings.describe()
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=CSV_FIELDS)
        writer.writeheader()
        for summary in summaries:
            writer.writerow(_csv_row(summary, described))
