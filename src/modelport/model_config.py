"""The schema of a model's optional ``<repository>/<model>/config.yaml``.

Every key is optional; a model folder without ``config.yaml`` is served with these defaults.
Unknown keys are refused, so a misspelt key is an error instead of a silent no-op. The file is
read with ``yaml.safe_load`` only. See ``docs/configuration.md`` for a commented example.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from modelport.types import Datatype

__all__ = [
    "ArchiveConfig",
    "ClassificationConfig",
    "DynamicBatchingConfig",
    "ExecutionProviderConfig",
    "ModelConfig",
    "RegressionConfig",
    "RuntimeConfig",
    "TensorOverride",
    "VersionPolicy",
    "WarmupConfig",
    "format_validation_error",
    "load_model_config",
]

_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class VersionPolicy(_Section):
    """Which version folders to serve: the newest ``latest`` ones, a ``specific`` list, or ``all``.

    YAML forms accepted: ``{latest: 2}``, ``{specific: [1, 3]}``, ``all``, and Triton's
    ``{latest: {num_versions: 2}}``, ``{specific: {versions: [1, 3]}}``, ``{all: {}}``.
    """

    kind: Literal["latest", "specific", "all"] = "latest"
    num_versions: Annotated[int, Field(ge=1)] = 1
    versions: tuple[Annotated[int, Field(ge=1)], ...] = ()

    def select(self, available: set[int]) -> set[int]:
        """The versions to serve out of those present on disk."""
        if self.kind == "all":
            return set(available)
        if self.kind == "specific":
            return available & set(self.versions)
        return set(sorted(available, reverse=True)[: self.num_versions])

    @classmethod
    def parse(cls, raw: Any) -> VersionPolicy:
        """Read any of the accepted YAML forms."""
        if raw is None:
            return cls()
        if isinstance(raw, VersionPolicy):
            return raw
        if isinstance(raw, dict) and "kind" in raw:  # the form model_dump() writes
            return cls.model_validate(raw)
        if raw == "all":
            raw = {"all": {}}
        if not isinstance(raw, dict) or len(raw) != 1:
            raise ValueError("write one of {latest: N}, {specific: [versions]} or all")
        ((kind, value),) = raw.items()
        if kind == "all":
            return cls(kind="all")
        if kind == "latest":
            return cls(kind="latest", num_versions=_latest_count(value))
        if kind == "specific":
            return cls(kind="specific", versions=_specific_versions(value))
        raise ValueError(f"unknown version policy {kind!r}; use latest, specific or all")

    def describe(self) -> str:
        if self.kind == "specific":
            return f"specific {list(self.versions)}"
        return "all" if self.kind == "all" else f"latest {self.num_versions}"


def _latest_count(value: Any) -> int:
    count = value.get("num_versions", 1) if isinstance(value, dict) else value
    if type(count) is not int or count < 1:
        raise ValueError(f"latest needs a positive number of versions, not {count!r}")
    return count


def _specific_versions(value: Any) -> tuple[int, ...]:
    versions = value.get("versions", []) if isinstance(value, dict) else value
    if (
        not isinstance(versions, list)
        or not versions
        or not all(type(v) is int and v > 0 for v in versions)
    ):
        raise ValueError("specific needs a non-empty list of positive version numbers")
    return tuple(versions)


class TensorOverride(_Section):
    """Declares an input or output more precisely than the model file does (e.g. fixed dims)."""

    name: str
    datatype: Datatype | None = None
    shape: list[Annotated[int, Field(ge=-1)]] | None = None


class ExecutionProviderConfig(_Section):
    """An onnxruntime execution provider with its options."""

    name: str
    options: dict[str, Any] = Field(default_factory=dict)


class RuntimeConfig(_Section):
    """Engine settings."""

    intra_op_threads: Annotated[int, Field(ge=0)] = 0
    """Threads one inference may use; 0 means as many as the CPUs this process may use."""
    inter_op_threads: Annotated[int, Field(ge=0)] = 0
    """Threads running independent graph nodes in parallel; 0 means 1 (nodes run in order)."""

    execution_providers: list[ExecutionProviderConfig] = Field(default_factory=list)
    graph_optimization_level: Literal["disabled", "basic", "extended", "all"] = "all"

    @field_validator("execution_providers", mode="before")
    @classmethod
    def _names_as_providers(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [{"name": v} if isinstance(v, str) else v for v in value]
        return value


class WarmupConfig(_Section):
    """Inference runs made on generated inputs before a version takes traffic."""

    enabled: bool = True
    iterations: Annotated[int, Field(ge=1)] = 1
    batch_size: Annotated[int, Field(ge=1)] = 1


class ClassificationConfig(_Section):
    """How TF Serving's ``:classify`` reads the model: the scores output and class labels."""

    scores: str | None = None
    classes: str | None = None
    labels: list[str] | None = None


class RegressionConfig(_Section):
    """Which output TF Serving's ``:regress`` returns."""

    output: str | None = None


class DynamicBatchingConfig(_Section):
    """Server-side batching of requests into one engine call (see ``core.batcher``)."""

    max_batch_size: Annotated[int, Field(ge=1)] = 32
    """Rows in one engine call; a request with more rows is refused (or split, see below)."""
    max_queue_delay_us: Annotated[int, Field(ge=0)] = 2000
    """The longest a request waits for company while another batch of its version runs."""
    preferred_batch_sizes: list[Annotated[int, Field(ge=1)]] = Field(default_factory=list)
    """Batch sizes the engine runs best; batches are cut to the largest that fits."""
    max_queue_size: Annotated[int, Field(ge=1)] = 1024
    """Requests waiting at most; beyond it requests get 429 with Retry-After."""
    pad_variable_length_inputs: bool = False
    """Pad inputs whose non-batch dimensions differ (token ids, say) to the longest in the batch."""
    pad_value: float = 0
    """The value padding adds."""
    split_large_requests: bool = False
    """Split a request with more than max_batch_size rows over several batches instead of
    refusing it."""
    default_timeout_us: Annotated[int, Field(ge=0)] = 0
    """How long a request may wait in the queue; 0 means no limit. A request's own ``timeout``
    parameter (microseconds, as in Triton) overrides it."""
    priority_levels: Annotated[int, Field(ge=1)] = 1
    """Queues by priority; a request's ``priority`` parameter picks one, 1 being the highest."""
    default_priority_level: Annotated[int, Field(ge=1)] | None = None
    """The level of a request that names none; by default the lowest."""

    @model_validator(mode="after")
    def _consistent(self) -> DynamicBatchingConfig:
        if any(size > self.max_batch_size for size in self.preferred_batch_sizes):
            raise ValueError("preferred_batch_sizes may not exceed max_batch_size")
        level = self.default_priority_level
        if level is not None and level > self.priority_levels:
            raise ValueError("default_priority_level must be between 1 and priority_levels")
        return self


class ArchiveConfig(_Section):
    """Limits on extracting a TorchServe ``.mar`` archive; an archive over one fails to load."""

    max_entries: Annotated[int, Field(ge=1)] = 10_000
    """Files and folders in the archive."""
    max_entry_bytes: Annotated[int, Field(ge=1)] = 8 << 30
    """Bytes of one extracted file (8 GiB)."""
    max_total_bytes: Annotated[int, Field(ge=1)] = 16 << 30
    """Bytes of all extracted files together (16 GiB)."""
    max_ratio: Annotated[float, Field(ge=1)] = 100.0
    """Extracted bytes per archive byte, for each entry and for the whole archive; entries and
    archives that expand to 1 MiB or less are exempt."""


class ModelConfig(_Section):
    """Everything ``config.yaml`` may say about one model."""

    platform: str | None = None
    default_model_filename: str | None = None
    version_policy: VersionPolicy = Field(default_factory=VersionPolicy)
    labels: dict[Annotated[str, Field(pattern=_NAME_PATTERN)], Annotated[int, Field(ge=1)]] = Field(
        default_factory=dict
    )
    max_batch_size: Annotated[int, Field(ge=0)] = 0
    inputs: list[TensorOverride] = Field(default_factory=list)
    outputs: list[TensorOverride] = Field(default_factory=list)
    runtime: RuntimeConfig = Field(default_factory=RuntimeConfig)
    warmup: WarmupConfig = Field(default_factory=WarmupConfig)
    classification: ClassificationConfig = Field(default_factory=ClassificationConfig)
    regression: RegressionConfig = Field(default_factory=RegressionConfig)
    dynamic_batching: DynamicBatchingConfig | None = None
    instances: Annotated[int, Field(ge=1)] | None = None
    """Engine calls of one version run at once; by default 1 with dynamic batching, else as
    many as the worker threads allow."""
    archive: ArchiveConfig = Field(default_factory=ArchiveConfig)
    """Extraction limits for a version served from a TorchServe ``.mar`` archive."""
    handler: str | None = None
    """The class (or function) of a Python handler file (``model.py``) to serve, when the file
    defines several handler classes."""
    torchserve_list_batch: bool = False
    """On the TorchServe API, read a JSON list body sent to a handler model as a batch, one
    request per element (texts in, one answer per text), instead of as one request."""
    allow_unsafe_pickle: bool = False
    """Let scikit-learn models load from pickle files (``model.joblib``, ``model.pkl``).
    Unpickling runs code from the file: set it only for files you trust."""

    #: Keys set by server-wide defaults (TF Serving's --enable_batching), not by config.yaml.
    _inherited: frozenset[str] = PrivateAttr(default=frozenset())

    def with_defaults(self, defaults: Mapping[str, object]) -> ModelConfig:
        """This config with ``defaults`` for the keys it does not set itself."""
        unset = {key: value for key, value in defaults.items() if key not in self.model_fields_set}
        config = self.model_copy(update=unset)
        config._inherited = frozenset(unset)
        return config

    def inherited(self, key: str) -> bool:
        """Whether ``key`` came from server-wide defaults rather than config.yaml."""
        return key in self._inherited

    @field_validator("version_policy", mode="before")
    @classmethod
    def _parse_policy(cls, value: Any) -> VersionPolicy:
        return VersionPolicy.parse(value)

    def fingerprint(self) -> str:
        """A digest of the settings that shape a loaded version (not policy nor labels)."""
        shaping = self.model_dump(mode="json", exclude={"version_policy", "labels"})
        return hashlib.sha256(repr(sorted(shaping.items())).encode()).hexdigest()[:16]


def format_validation_error(exc: ValidationError) -> str:
    """One line per problem, each naming the key path, e.g. ``warmup.iterations: ...``."""
    parts = []
    for error in exc.errors():
        where = ".".join(str(p) for p in error["loc"]) or "(top level)"
        parts.append(f"{where}: {error['msg']}")
    return "; ".join(parts)


def load_model_config(path: Path) -> ModelConfig:
    """Read and validate a ``config.yaml``; raise ValueError with a readable message."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ValueError(f"cannot read {path.name}: {exc}") from exc
    if raw is None:
        return ModelConfig()
    if not isinstance(raw, dict):
        raise ValueError(f"{path.name} must hold a mapping of settings, not {type(raw).__name__}")
    try:
        return ModelConfig.model_validate(raw)
    except ValidationError as exc:
        raise ValueError(f"invalid {path.name}: {format_validation_error(exc)}") from exc
