"""The facts of one step, as written to ``report.json`` and shown in the table."""

from __future__ import annotations

import dataclasses
import datetime
import importlib.metadata
import json
import math
import platform
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelport import __version__
from modelport.convert.parity import OutputParity
from modelport.convert.tolerance import Tolerance
from modelport.types import TensorSpec

__all__ = ["REPORT_FILENAME", "ModelFacts", "Report", "library_versions", "write_report"]

REPORT_FILENAME = "report.json"

#: Distributions whose versions a report records when they are installed.
_LIBRARIES = (
    "numpy",
    "onnx",
    "onnxruntime",
    "torch",
    "onnxscript",
    "tensorflow-cpu",
    "tensorflow",
    "tf2onnx",
    "scikit-learn",
    "skl2onnx",
    "onnxmltools",
    "xgboost",
    "lightgbm",
)


def library_versions() -> dict[str, str]:
    """modelport's, Python's and each installed library's version."""
    versions = {"modelport": __version__, "python": platform.python_version()}
    for name in _LIBRARIES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


@dataclass(frozen=True)
class ModelFacts:
    """One side of the comparison: where it is, how big, how fast, what it takes and gives."""

    label: str
    path: str
    size_bytes: int
    latency_s: float | None
    inputs: tuple[TensorSpec, ...] | None = None
    outputs: tuple[TensorSpec, ...] | None = None


@dataclass(frozen=True)
class Report:
    """Everything one ``convert``, ``optimize`` or ``quantize`` run found out."""

    step: str
    command: Sequence[str]
    passed: bool
    source: ModelFacts
    result: ModelFacts
    tolerance: Tolerance
    outputs: Sequence[OutputParity]
    samples: dict[str, Any]
    latency_runs: int
    output_dir: str
    details: dict[str, Any] = field(default_factory=dict)
    notes: Sequence[str] = ()
    versions: dict[str, str] = field(default_factory=library_versions)
    created: str = field(
        default_factory=lambda: datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    )

    def failures(self) -> list[str]:
        """One line per output that failed, saying why."""
        return [f"{o.name}: {o.reason}" for o in self.outputs if not o.passed]

    def to_json(self) -> dict[str, Any]:
        """The report as JSON-ready data (non-finite numbers become strings)."""
        data = {
            "step": self.step,
            "passed": self.passed,
            "command": list(self.command),
            "output_dir": self.output_dir,
            "source": _facts(self.source),
            "result": _facts(self.result),
            "tolerance": dataclasses.asdict(self.tolerance),
            "samples": self.samples,
            "latency_runs": self.latency_runs,
            "outputs": [dataclasses.asdict(o) for o in self.outputs],
            "failures": self.failures(),
            "details": self.details,
            "notes": list(self.notes),
            "versions": self.versions,
            "created": self.created,
        }
        return _finite(data)  # type: ignore[no-any-return]


def write_report(report: Report, path: Path) -> None:
    """Write the report as indented JSON."""
    path.write_text(json.dumps(report.to_json(), indent=2) + "\n", encoding="utf-8")


def _facts(facts: ModelFacts) -> dict[str, Any]:
    data: dict[str, Any] = {
        "label": facts.label,
        "path": facts.path,
        "size_bytes": facts.size_bytes,
        "latency_ms": None if facts.latency_s is None else facts.latency_s * 1e3,
    }
    for key, specs in (("inputs", facts.inputs), ("outputs", facts.outputs)):
        if specs is not None:
            data[key] = [
                {"name": s.name, "datatype": str(s.datatype), "shape": list(s.shape)} for s in specs
            ]
    return data


def _finite(value: Any) -> Any:
    """JSON has no NaN or infinity: write them as the strings "NaN", "Infinity"."""
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value
