"""The ``Runtime`` contract every engine implements, and the options an engine is loaded with.

A runtime is created already loaded by its ``load`` class method, so no half-built instance ever
exists. ``infer`` is synchronous and thread-safe: the dataplane calls it from worker threads,
several at a time. Engines are imported lazily inside their own module only.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from modelport.errors import NotFound
from modelport.model_config import TensorOverride
from modelport.runtimes.mar_archive import ArchiveLimits
from modelport.types import DEFAULT_SIGNATURE_NAME, Signature

__all__ = [
    "DEFAULT_SIGNATURE_NAME",
    "ExecutionProvider",
    "Runtime",
    "RuntimeOptions",
    "available_cpus",
]


def available_cpus() -> int:
    """The CPUs this process may run on (respects ``taskset`` and container CPU sets)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


@dataclass(frozen=True, slots=True)
class ExecutionProvider:
    """An engine back-end to try, with its options (e.g. ``CUDAExecutionProvider``)."""

    name: str
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class RuntimeOptions:
    """Engine settings taken from a model's ``runtime:`` configuration section.

    Zero thread counts let the engine choose. Providers are tried in order; the CPU provider is
    always the last fallback.
    """

    intra_op_threads: int = 0
    inter_op_threads: int = 0
    execution_providers: tuple[ExecutionProvider, ...] = ()
    graph_optimization_level: str = "all"
    #: Whether an engine may unpickle the model file (``allow_unsafe_pickle`` in config.yaml).
    allow_unsafe_pickle: bool = False
    #: ``config.yaml``'s ``inputs:`` and ``outputs:``, for engines whose model files do not record
    #: their tensors' types (TorchScript); other engines leave them to the loader's checks.
    declared_inputs: tuple[TensorOverride, ...] = ()
    declared_outputs: tuple[TensorOverride, ...] = ()
    #: The handler class (or function) a Python handler file serves (``handler`` in config.yaml).
    handler: str | None = None
    #: The most rows one ``infer`` call gets: ``dynamic_batching.max_batch_size``, else
    #: ``max_batch_size`` (0: no limit).
    max_batch_size: int = 0
    #: Extraction limits for a TorchServe ``.mar`` archive (``archive:`` in config.yaml).
    archive_limits: ArchiveLimits = field(default_factory=ArchiveLimits)


class Runtime(ABC):
    """A loaded model version that can run inference."""

    #: Reported as the model's ``platform`` in V2 metadata.
    platform: ClassVar[str]
    #: The file name looked for in a version folder when the config names none.
    default_model_filename: ClassVar[str]
    #: Whether a call measured to be quick may run inline on the event loop (see
    #: ``core.dispatch``); engines that may hold the GIL for long (Python handlers) say False.
    may_run_inline: ClassVar[bool] = True

    @classmethod
    @abstractmethod
    def find_model_file(cls, version_dir: Path, filename: str | None) -> Path | None:
        """The file (or folder) in ``version_dir`` this engine would load, or None."""

    @classmethod
    @abstractmethod
    def load(cls, model_path: Path, options: RuntimeOptions, context: str = "") -> Runtime:
        """Load the model at ``model_path``; raise ``ModelLoadError`` saying why if it cannot.

        ``context`` names the model version in log lines (for example ``mnist version 2``).
        """

    @property
    @abstractmethod
    def signature(self) -> Signature:
        """Inputs and outputs as the model declares them."""

    @abstractmethod
    def infer(
        self, inputs: Mapping[str, np.ndarray[Any, Any]], outputs: Sequence[str]
    ) -> dict[str, np.ndarray[Any, Any]]:
        """Run the model; return the named ``outputs``. Thread-safe, may release the GIL."""

    @property
    def signatures(self) -> Mapping[str, Signature]:
        """Every signature the model has, by name; ``serving_default`` is ``signature``.

        Only SavedModels have more than one. The others are served by TF Serving's protocols
        when a request names them (``signature_name``), without dynamic batching.
        """
        return {DEFAULT_SIGNATURE_NAME: self.signature}

    def infer_signature(
        self,
        name: str,
        inputs: Mapping[str, np.ndarray[Any, Any]],
        outputs: Sequence[str],
    ) -> dict[str, np.ndarray[Any, Any]]:
        """Run the signature called ``name`` (``infer`` for ``serving_default``)."""
        if name == DEFAULT_SIGNATURE_NAME:
            return self.infer(inputs, outputs)
        raise NotFound(
            f"the model has no signature {name!r}; its signatures: "
            f"{', '.join(sorted(self.signatures))}"
        )

    @abstractmethod
    def unload(self) -> None:
        """Free the engine's resources. No call to ``infer`` follows."""
