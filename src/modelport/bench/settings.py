"""The settings of one ``modelport bench`` run, parsed and checked once from the command line.

Everything here is pure: the parsers turn option strings into values or raise ``UsageError`` with
a message that names the option, so the command exits with code 2 before touching the network.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from modelport.bench.errors import UsageError

__all__ = [
    "DISTRIBUTIONS",
    "PROTOCOLS",
    "BenchSettings",
    "LoadStep",
    "Target",
    "make_settings",
    "parse_concurrency_list",
    "parse_concurrency_range",
    "parse_rate_list",
    "parse_shapes",
    "parse_url",
]

#: The wire protocols bench can speak; gRPC ones will join this list with their own client.
PROTOCOLS = ("v2-json", "v2-binary", "tfserving")
#: How request-rate mode spaces its requests: evenly, or as a Poisson process.
DISTRIBUTIONS = ("constant", "poisson")


@dataclass(frozen=True)
class Target:
    """Where the server listens: host, port and an optional path prefix (no trailing slash)."""

    host: str
    port: int
    prefix: str = ""

    @property
    def url(self) -> str:
        """The base URL, as a user would write it."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}{self.prefix}"

    @property
    def host_header(self) -> str:
        """The value of the ``Host`` header for requests to this target."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


@dataclass(frozen=True)
class LoadStep:
    """One measurement step: a fixed concurrency (closed loop) or a fixed rate (open loop)."""

    concurrency: int | None = None
    rate: float | None = None

    @property
    def kind(self) -> str:
        """``"concurrency"`` or ``"rate"``."""
        return "concurrency" if self.concurrency is not None else "rate"

    @property
    def value(self) -> float:
        """The concurrency or the rate in requests/s."""
        if self.concurrency is not None:
            return float(self.concurrency)
        assert self.rate is not None
        return self.rate

    @property
    def label(self) -> str:
        """A short description such as ``concurrency 8`` or ``rate 500/s``."""
        if self.concurrency is not None:
            return f"concurrency {self.concurrency}"
        return f"rate {self.value:g}/s"


@dataclass(frozen=True)
class BenchSettings:
    """Everything one run needs, checked; built by ``make_settings``."""

    model: str
    target: Target
    steps: tuple[LoadStep, ...]
    version: str | None = None
    protocol: str = "v2-json"
    batch_size: int = 1
    shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)
    input_data: Path | None = None
    string_length: int = 16
    seed: int = 0
    duration_s: float = 10.0
    warmup_s: float = 2.0
    processes: int = 1
    max_connections: int = 256
    timeout_s: float = 10.0
    check_every: int = 0
    distribution: str = "constant"
    quiet: bool = False
    json_path: Path | None = None
    csv_path: Path | None = None
    plot_path: Path | None = None

    @property
    def mode(self) -> str:
        """``"concurrency"`` or ``"rate"``: every step of a run has the same kind."""
        return self.steps[0].kind

    def describe(self) -> dict[str, Any]:
        """The settings as plain JSON values, for the JSON and CSV reports."""
        return {
            "model": self.model,
            "version": self.version,
            "url": self.target.url,
            "protocol": self.protocol,
            "mode": self.mode,
            "batch_size": self.batch_size,
            "shapes": {name: list(dims) for name, dims in self.shapes.items()},
            "input_data": str(self.input_data) if self.input_data else None,
            "duration_s": self.duration_s,
            "warmup_s": self.warmup_s,
            "processes": self.processes,
            "max_connections": self.max_connections,
            "timeout_s": self.timeout_s,
            "check_every": self.check_every,
            "distribution": self.distribution,
            "seed": self.seed,
        }


def parse_url(text: str) -> Target:
    """``http://host:port[/prefix]``, ``host:port`` or ``host``; TLS is refused."""
    raw = text.strip()
    if "://" not in raw:
        raw = "http://" + raw
    parts = urlsplit(raw)
    if parts.scheme != "http":
        raise UsageError(
            f"--url {text!r}: only http:// is supported (put a TLS-terminating proxy in front "
            "for https)"
        )
    try:
        port = parts.port
    except ValueError as exc:
        raise UsageError(f"--url {text!r}: {exc}") from exc
    if not parts.hostname:
        raise UsageError(f"--url {text!r} names no host")
    return Target(parts.hostname, port or 80, parts.path.rstrip("/"))


def _positive_int(text: str, option: str) -> int:
    try:
        value = int(text)
    except ValueError as exc:
        raise UsageError(f"{option}: {text!r} is not a whole number") from exc
    if value < 1:
        raise UsageError(f"{option}: {value} is below 1")
    return value


def parse_concurrency_list(text: str) -> list[int]:
    """``"1,8,32"`` -> ``[1, 8, 32]``: one step per value, in the order given."""
    return [_positive_int(item.strip(), "--concurrency") for item in text.split(",")]


def parse_concurrency_range(text: str) -> list[int]:
    """``"start:end[:factor]"`` -> ``start, start*factor, ...`` up to and including ``end``.

    The factor defaults to 2: ``1:64:2`` and ``1:64`` give 1, 2, 4, 8, 16, 32, 64, and ``1:48``
    stops at 32.
    """
    parts = text.split(":")
    if len(parts) not in (2, 3):
        raise UsageError(f"--concurrency-range {text!r}: expected start:end or start:end:factor")
    option = "--concurrency-range"
    start, end = (_positive_int(p.strip(), option) for p in parts[:2])
    factor = _positive_int(parts[2].strip(), option) if len(parts) == 3 else 2
    if end < start:
        raise UsageError(f"{option} {text!r}: end {end} is below start {start}")
    if factor < 2:
        raise UsageError(f"{option} {text!r}: the factor must be 2 or more")
    values = [start]
    while values[-1] * factor <= end:
        values.append(values[-1] * factor)
    return values


def parse_rate_list(text: str) -> list[float]:
    """``"500"`` or ``"100,200,400"`` -> request rates in requests/s, each above 0."""
    rates = []
    for item in text.split(","):
        try:
            rate = float(item.strip())
        except ValueError as exc:
            raise UsageError(f"--request-rate: {item.strip()!r} is not a number") from exc
        if not math.isfinite(rate) or rate <= 0:
            raise UsageError(f"--request-rate: {item.strip()} must be above 0")
        rates.append(rate)
    return rates


def parse_shapes(items: list[str]) -> dict[str, tuple[int, ...]]:
    """``["name:d1,d2", ...]`` -> ``{"name": (d1, d2)}``; each dimension 0 or more."""
    shapes: dict[str, tuple[int, ...]] = {}
    for item in items:
        name, sep, dims = item.rpartition(":")
        if not sep or not name:
            raise UsageError(f"--shape {item!r}: expected NAME:D1,D2,... such as images:28,28")
        try:
            shape = tuple(int(d) for d in dims.split(","))
        except ValueError as exc:
            raise UsageError(f"--shape {item!r}: dimensions must be whole numbers") from exc
        if any(d < 0 for d in shape):
            raise UsageError(f"--shape {item!r}: dimensions must be 0 or more")
        if name in shapes:
            raise UsageError(f"--shape gives input {name!r} twice")
        shapes[name] = shape
    return shapes


def _steps(
    concurrency: str | None, concurrency_range: str | None, request_rate: str | None
) -> tuple[LoadStep, ...]:
    given = [
        flag
        for flag, value in (
            ("--concurrency", concurrency),
            ("--concurrency-range", concurrency_range),
            ("--request-rate", request_rate),
        )
        if value is not None
    ]
    if len(given) > 1:
        raise UsageError(f"give only one of {', '.join(given)}")
    if request_rate is not None:
        return tuple(LoadStep(rate=r) for r in parse_rate_list(request_rate))
    if concurrency_range is not None:
        values = parse_concurrency_range(concurrency_range)
    else:
        values = parse_concurrency_list(concurrency or "1")
    return tuple(LoadStep(concurrency=c) for c in values)


def _check_ranges(settings: BenchSettings) -> None:
    checks = [
        (settings.duration_s > 0, "--duration must be above 0"),
        (settings.warmup_s >= 0, "--warmup must be 0 or more"),
        (settings.batch_size >= 1, "--batch-size must be 1 or more"),
        (settings.processes >= 1, "--processes must be 1 or more"),
        (settings.max_connections >= 1, "--max-connections must be 1 or more"),
        (settings.timeout_s > 0, "--timeout must be above 0"),
        (settings.check_every >= 0, "--check must be 0 (off) or more"),
        (settings.string_length >= 0, "--string-length must be 0 or more"),
        (settings.protocol in PROTOCOLS, f"--protocol must be one of {', '.join(PROTOCOLS)}"),
        (
            settings.distribution in DISTRIBUTIONS,
            f"--request-distribution must be one of {', '.join(DISTRIBUTIONS)}",
        ),
    ]
    for ok, message in checks:
        if not ok:
            raise UsageError(message)


def make_settings(
    model: str,
    *,
    url: str = "http://127.0.0.1:8501",
    version: int | None = None,
    protocol: str = "v2-json",
    concurrency: str | None = None,
    concurrency_range: str | None = None,
    request_rate: str | None = None,
    batch_size: int | None = None,
    shapes: list[str] | None = None,
    input_data: Path | None = None,
    **options: Any,
) -> BenchSettings:
    """Check the command line's values and build the settings, or raise ``UsageError``.

    ``options`` are the remaining ``BenchSettings`` fields (``duration_s``, ``quiet``, ...).
    """
    if version is not None and version < 1:
        raise UsageError("--version must be 1 or more")
    if input_data is not None and (batch_size is not None or shapes):
        raise UsageError(
            "--input-data sends the tensors exactly as the file gives them; "
            "drop --batch-size and --shape, or drop --input-data"
        )
    settings = BenchSettings(
        model=model,
        target=parse_url(url),
        steps=_steps(concurrency, concurrency_range, request_rate),
        version=str(version) if version is not None else None,
        protocol=protocol,
        batch_size=1 if batch_size is None else batch_size,
        shapes=parse_shapes(shapes or []),
        input_data=input_data,
        **options,
    )
    _check_ranges(settings)
    return settings
