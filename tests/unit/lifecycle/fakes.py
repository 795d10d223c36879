"""A fake loader and source builders for driving ``ModelManager`` without files or engines."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from modelport.errors import ModelLoadError
from modelport.lifecycle.loader import LoadedVersion
from modelport.lifecycle.manager import ModelManager
from modelport.lifecycle.repository import Fingerprint, ModelSource, VersionFolder
from modelport.model_config import ModelConfig
from modelport.runtimes.mock import MockRuntime
from modelport.types import Datatype, Signature, TensorSpec

SIGNATURE = Signature(
    inputs=(TensorSpec("x", Datatype.FP32, (-1, 1)),),
    outputs=(TensorSpec("y", Datatype.FP32, (-1, 1)),),
)

#: Long enough that a healthy test never reaches it; only a hung test does.
PATIENCE_S = 10.0


def context(model: str, version: int) -> str:
    """The context string the manager hands the loader for one version."""
    return f"model {model} version {version}"


class FakeLoader:
    """A ``Loader`` building ``MockRuntime`` versions, told per version to fail or to wait."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.failures: dict[str, BaseException] = {}
        self.gates: dict[str, threading.Event] = {}
        self.runtimes: dict[str, list[MockRuntime]] = {}
        self.finished: list[str] = []
        self._lock = threading.Lock()

    def fail(self, model: str, version: int, message: str = "broken model file") -> None:
        self.failures[context(model, version)] = ModelLoadError(message)

    def crash(self, model: str, version: int, error: BaseException) -> None:
        self.failures[context(model, version)] = error

    def heal(self, model: str, version: int) -> None:
        self.failures.pop(context(model, version), None)

    def gate(self, model: str, version: int) -> threading.Event:
        event = threading.Event()
        self.gates[context(model, version)] = event
        return event

    def release_all(self) -> None:
        for event in self.gates.values():
            event.set()

    def count(self, model: str, version: int) -> int:
        return self.calls.count(context(model, version))

    def runtime(self, model: str, version: int) -> MockRuntime:
        """The newest runtime built for that version."""
        return self.runtimes[context(model, version)][-1]

    def __call__(self, folder: VersionFolder, config: ModelConfig, ctx: str) -> LoadedVersion:
        with self._lock:
            self.calls.append(ctx)
        try:
            gate = self.gates.get(ctx)
            if gate is not None:
                gate.wait(timeout=PATIENCE_S)
            failure = self.failures.get(ctx)
            if failure is not None:
                raise failure
            value = float(folder.version)
            runtime = MockRuntime(SIGNATURE, lambda inputs: {"y": np.full_like(inputs["x"], value)})
            with self._lock:
                self.runtimes.setdefault(ctx, []).append(runtime)
            return LoadedVersion(runtime, SIGNATURE)
        finally:
            with self._lock:
                self.finished.append(ctx)


def files(tag: str = "a", size: int = 10) -> Fingerprint:
    """A version folder fingerprint; a different ``tag`` or ``size`` means changed files."""
    return ((f"model.{tag}", size, 1_000),)


def folder(model: str, version: int, fingerprint: Fingerprint | None = None) -> VersionFolder:
    path = Path("/repository") / model / str(version)
    return VersionFolder(version, path, files() if fingerprint is None else fingerprint)


def source(
    name: str,
    versions: Iterable[int] | Mapping[int, Fingerprint],
    config: ModelConfig | None = None,
    config_error: str | None = None,
) -> ModelSource:
    """A model as a scan would see it; ``config`` defaults to ``ModelConfig()`` unless erroneous."""
    if isinstance(versions, Mapping):
        folders = {v: folder(name, v, fp) for v, fp in versions.items()}
    else:
        folders = {v: folder(name, v) for v in versions}
    if config is None and config_error is None:
        config = ModelConfig()
    return ModelSource(name, Path("/repository") / name, config, config_error, folders)


def everything(sources: Iterable[ModelSource]) -> set[tuple[str, int]]:
    """Every version folder of ``sources`` as stable."""
    return {(s.name, v) for s in sources for v in s.versions}


async def apply(
    manager: ModelManager,
    *sources: ModelSource,
    stable: Iterable[tuple[str, int]] | None = None,
    wait: bool = True,
) -> None:
    """Apply one scan (all folders stable unless told) and, by default, wait for loads to end."""
    await manager.apply(
        {s.name: s for s in sources}, everything(sources) if stable is None else set(stable)
    )
    if wait:
        await manager.wait_idle()


async def wait_until(condition: Callable[[], Any], what: str = "condition") -> None:
    """Let the event loop run until ``condition()`` is true (fails after ``PATIENCE_S``)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + PATIENCE_S
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        await asyncio.sleep(0.001)


def config(**values: Any) -> ModelConfig:
    return ModelConfig.model_validate(values)
