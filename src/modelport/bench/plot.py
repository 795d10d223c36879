"""``--plot``: latency percentiles and throughput against concurrency or rate, as a PNG.

matplotlib is optional (``pip install 'modelport[bench]'``); it is imported only here, and only
when a plot is asked for. ``require`` checks for it before the run, so a long benchmark never
ends without its plot.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from modelport.bench.errors import UsageError
from modelport.bench.stats import PERCENTILES, StepSummary

__all__ = ["require", "write_plot"]

_LOG_RATIO = 20  # figures spanning more than this factor get a log axis
_MISSING = "--plot needs matplotlib, which is not installed: pip install 'modelport[bench]'"


def require() -> None:
    """Raise ``UsageError`` naming the extra to install if matplotlib is missing."""
    try:
        import matplotlib  # type: ignore[import-not-found, unused-ignore]  # noqa: F401
    except ImportError as exc:
        raise UsageError(_MISSING) from exc


def write_plot(path: Path, summaries: Sequence[StepSummary], title: str) -> None:
    """Two panels sharing the x axis: latency percentiles (ms) above, requests/s below."""
    require()
    from matplotlib.backends.backend_agg import (  # type: ignore[import-not-found, unused-ignore]
        FigureCanvasAgg,
    )
    from matplotlib.figure import Figure  # type: ignore[import-not-found, unused-ignore]
    from matplotlib.ticker import (  # type: ignore[import-not-found, unused-ignore]
        FuncFormatter,
        NullLocator,
    )

    rate_mode = bool(summaries) and summaries[0].step.rate is not None
    ordered = sorted(summaries, key=lambda s: s.step.value)
    xs = [s.step.value for s in ordered]
    figure = Figure(figsize=(8, 6.5), layout="constrained")
    FigureCanvasAgg(figure)
    latency_axes, throughput_axes = figure.subplots(2, 1, sharex=True)
    shown: list[float] = []
    for name, _ in PERCENTILES:
        values = [s.latency_us[name] / 1000 for s in ordered]
        shown.extend(v for v in values if v > 0 and not math.isnan(v))
        latency_axes.plot(xs, values, marker="o", label=name)
    if shown and max(shown) / min(shown) > _LOG_RATIO:
        latency_axes.set_yscale("log")  # tails dwarf the median on a linear axis
        latency_axes.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        latency_axes.yaxis.set_minor_formatter(FuncFormatter(_minor_label))

    else:
        latency_axes.set_ylim(bottom=0)
    latency_axes.set_ylabel("latency (ms)")
    latency_axes.legend(loc="best", fontsize="small")
    latency_axes.grid(True, which="both", alpha=0.3)
    latency_axes.set_title(title)
    throughput_axes.plot(xs, [s.requests_per_s for s in ordered], marker="o", color="tab:green")
    throughput_axes.set_ylabel("requests/s")
    throughput_axes.set_ylim(bottom=0)
    throughput_axes.grid(True, alpha=0.3)
    throughput_axes.set_xlabel("target rate (requests/s)" if rate_mode else "concurrency")
    positive = [x for x in xs if x > 0]
    if len(positive) > 1 and max(positive) / min(positive) >= _LOG_RATIO / 2:
        throughput_axes.set_xscale("log", base=2)
        throughput_axes.set_xticks(xs, [f"{x:g}" for x in xs])
        throughput_axes.xaxis.set_minor_locator(NullLocator())
    figure.savefig(path, dpi=120)


def _minor_label(value: float, _position: object = None) -> str:
    """Label the 2s and 5s between powers of ten, so a short log axis still reads."""
    if value <= 0:
        return ""
    mantissa = round(value / 10 ** math.floor(math.log10(value)), 6)
    return f"{value:g}" if mantissa in (2.0, 5.0) else ""
