"""The model manager: which versions are loaded, and swapping them without dropping a request.

Each repository scan yields the versions the version policy wants (the *target*). The manager
loads target versions in worker threads; a version it replaces keeps serving until every target
version has settled (AVAILABLE or FAILED). Then versions outside the target move to UNLOADING:
the router stops sending them requests, the requests they hold finish, and they unload.

A target version that FAILED is covered by the newest AVAILABLE version outside the target, so a
broken upload never takes a working model down. A FAILED version is retried only when its files
or the model's config change, so a failure is logged once, not on every poll.

Everything here runs on the event loop; only loading and unloading run in threads.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Collection, Coroutine, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from modelport.core.batcher import Batcher, BatchObserver
from modelport.core.dataplane import ServedVersion
from modelport.core.dispatch import ComputeEstimate
from modelport.core.scheduling import Scheduler
from modelport.core.stats import VersionStats
from modelport.errors import (
    LabelNotFound,
    ModelLoadError,
    ModelNotFound,
    ModelNotReady,
    VersionNotFound,
)
from modelport.lifecycle.loader import LoadedVersion, load_version
from modelport.lifecycle.repository import ModelSource, VersionFolder
from modelport.lifecycle.states import check_transition
from modelport.model_config import ModelConfig
from modelport.runtimes.base import Runtime
from modelport.types import IndexEntry, ModelState, Signature, VersionStatus

__all__ = ["Loader", "ManagedModel", "ModelManager", "ModelVersion"]

log = logging.getLogger(__name__)

#: A target version in one of these states cannot serve yet: what it replaces keeps serving.
#: (An UNLOADING target version is one that came back into the target while draining; it is
#: loaded again once its unload finishes.)
_UNSETTLED = frozenset({ModelState.START, ModelState.LOADING, ModelState.UNLOADING})

#: ModelState as Triton's repository index names it.
_INDEX_STATE = {
    ModelState.START: "LOADING",
    ModelState.LOADING: "LOADING",
    ModelState.AVAILABLE: "READY",
    ModelState.UNLOADING: "UNLOADING",
    ModelState.END: "UNAVAILABLE",
    ModelState.FAILED: "UNAVAILABLE",
}


Loader = Callable[[VersionFolder, ModelConfig, str], LoadedVersion]
#: Readies a version that just loaded for traffic (its scheduler, its metrics).
Prepare = Callable[["ModelVersion"], None]


@dataclass(eq=False)
class ModelVersion:
    """One version of one model, through its whole life. Implements ``ServedVersion``."""

    model: str
    version: int
    folder: VersionFolder
    config: ModelConfig
    config_fingerprint: str
    state: ModelState = ModelState.START
    error: str | None = None
    loaded: LoadedVersion | None = None
    inflight: int = 0
    idle: asyncio.Event | None = None
    compute: ComputeEstimate = field(default_factory=ComputeEstimate)
    scheduler: Scheduler | None = None
    executions: BatchObserver | None = None
    stats: VersionStats = field(default_factory=VersionStats)

    @property
    def runtime(self) -> Runtime:
        assert self.loaded is not None, "only AVAILABLE versions are served"
        return self.loaded.runtime

    @property
    def signature(self) -> Signature:
        assert self.loaded is not None, "only AVAILABLE versions are served"
        return self.loaded.signature

    @property
    def platform(self) -> str:
        if self.loaded is not None:
            return self.loaded.runtime.platform
        return self.config.platform or ""

    @property
    def context(self) -> str:
        return f"model {self.model} version {self.version}"

    def move(self, new: ModelState) -> None:
        """Change state, refusing transitions the state machine does not allow."""
        check_transition(self.state, new, self.context)
        self.state = new

    def status(self) -> VersionStatus:
        return VersionStatus(self.version, self.state, self.error)


@dataclass(eq=False)
class ManagedModel:
    """A model and its versions; ``source`` is None once its folder left the repository."""

    name: str
    source: ModelSource | None = None
    versions: dict[int, ModelVersion] = field(default_factory=dict)
    target: set[int] = field(default_factory=set)
    labels: dict[str, int] = field(default_factory=dict)
    #: The last valid configuration; it stays in force while config.yaml is invalid.
    config: ModelConfig | None = None

    serving: ModelVersion | None = None  #: the newest AVAILABLE version, for requests naming none

    def refresh(self) -> None:
        available = [mv for mv in self.versions.values() if mv.state is ModelState.AVAILABLE]
        self.serving = max(available, key=lambda mv: mv.version, default=None)


class ModelManager:
    """Owns every model version; implements the dataplane's ``ModelStore``."""

    def __init__(
        self,
        loader: Loader = load_version,
        *,
        load_threads: int = 2,
        load_timeout_s: float = 600.0,
        strict_readiness: bool = True,
        prepare: Prepare | None = None,
        on_load_failure: Callable[[str], None] | None = None,
    ) -> None:
        self.models: dict[str, ManagedModel] = {}
        self._loader = loader
        self._pool = ThreadPoolExecutor(max_workers=load_threads, thread_name_prefix="load")
        self._load_timeout_s = load_timeout_s
        self._strict = strict_readiness
        self._prepare = prepare
        self._on_load_failure = on_load_failure
        self._loads: set[asyncio.Task[None]] = set()
        self._unloads: set[asyncio.Task[None]] = set()
        self._closing = False

        self._first_sources: set[str] | None = None
        self._repository: set[str] = set()  # model names in the last scan
        self._unloaded: set[str] = set()  # unloaded on request, kept out until loaded again
        self._startup_models: set[str] | None = None

    # ---- requests -------------------------------------------------------------------------

    def acquire(self, name: str, version: int | None, label: str | None) -> ModelVersion:
        """Lease the AVAILABLE version a request names (the newest when it names none)."""
        model = self._model(name)
        if label is not None:
            version = self._label_version(model, label)
        if version is None:
            target = model.serving
            if target is None:
                raise ModelNotReady(self._why_not_serving(model))
        else:
            target = model.versions.get(version)
            if target is None:
                raise VersionNotFound(self._missing_version(model, version))
            if target.state is not ModelState.AVAILABLE:
                raise ModelNotReady(self._not_available(target))
        target.inflight += 1
        return target

    def release(self, target: ServedVersion) -> None:
        """End a lease; the last lease on an UNLOADING version lets it unload."""
        assert isinstance(target, ModelVersion), "leases come from acquire()"
        target.inflight -= 1
        if target.inflight == 0 and target.idle is not None:
            target.idle.set()

    def status(self, name: str, version: int | None, label: str | None) -> list[VersionStatus]:
        """Status of one version, or of every version the model has, newest first."""
        model = self._model(name)
        if label is not None:
            version = self._label_version(model, label)
        if version is not None:
            found = model.versions.get(version)
            if found is None:
                raise VersionNotFound(self._missing_version(model, version))
            return [found.status()]
        return [mv.status() for _, mv in sorted(model.versions.items(), reverse=True)]

    def available_versions(self, name: str) -> list[int]:
        model = self._model(name)
        return sorted(
            (v for v, mv in model.versions.items() if mv.state is ModelState.AVAILABLE),
            reverse=True,
        )

    def busy_versions(self) -> list[str]:
        """The versions holding requests now, as ``model version N (K requests)``."""
        return [
            f"{mv.context} ({mv.inflight} requests)"
            for model in self.models.values()
            for mv in model.versions.values()
            if mv.inflight
        ]

    def queue_depths(self) -> list[tuple[str, int, int]]:
        """(model, version, requests queued) for every version with a batching queue."""
        return [
            (mv.model, mv.version, mv.scheduler.queued)
            for model in self.models.values()
            for mv in model.versions.values()
            if isinstance(mv.scheduler, Batcher)
        ]

    def model_names(self) -> list[str]:
        return sorted(name for name, model in self.models.items() if model.source is not None)

    def ready(self) -> bool:
        """Ready once the first load finished and (strict) every model present then serves.

        Models added later, and versions that fail later, do not affect readiness: the versions
        that were serving keep serving.
        """
        if self._startup_models is None:
            return False
        if not self._strict:
            return True
        for name in self._startup_models:
            model = self.models.get(name)
            if model is not None and model.source is not None and model.serving is None:
                return False
        return True

    def _model(self, name: str) -> ManagedModel:
        model = self.models.get(name)
        if model is None or model.source is None:
            known = ", ".join(self.model_names()[:20]) or "none"
            raise ModelNotFound(f"model {name!r} is not in the repository; models served: {known}")
        return model

    def _label_version(self, model: ManagedModel, label: str) -> int:
        version = model.labels.get(label)
        if version is None:
            labels = ", ".join(sorted(model.labels)) or "none"
            raise LabelNotFound(
                f"model {model.name!r} has no version label {label!r}; its labels: {labels}"
            )
        return version

    def _missing_version(self, model: ManagedModel, version: int) -> str:
        versions = ", ".join(str(v) for v in sorted(model.versions)) or "none"
        hint = ""
        if model.source is not None and version in model.source.versions:
            policy = (model.source.config or ModelConfig()).version_policy.describe()
            hint = f" (its folder exists, but the version policy is {policy})"
        return f"model {model.name!r} has no version {version}{hint}; versions: {versions}"

    @staticmethod
    def _not_available(target: ModelVersion) -> str:
        if target.state is ModelState.FAILED:
            return f"{target.context} failed to load: {target.error}"
        return f"{target.context} is not available (state {target.state}); retry shortly"

    def why_not_serving(self, name: str) -> str:
        """Why model ``name`` has no version to serve (for error messages)."""
        return self._why_not_serving(self._model(name))

    def _why_not_serving(self, model: ManagedModel) -> str:
        failed = [mv for mv in model.versions.values() if mv.state is ModelState.FAILED]
        if failed:
            newest = max(failed, key=lambda mv: mv.version)
            return f"model {model.name!r} has no available version: {self._not_available(newest)}"
        if any(mv.state is ModelState.LOADING for mv in model.versions.values()):
            return f"model {model.name!r} is loading; retry shortly"
        return f"model {model.name!r} has no version to serve; add a version folder such as 1/"

    # ---- repository changes ---------------------------------------------------------------

    async def apply(
        self, sources: Mapping[str, ModelSource], stable: Collection[tuple[str, int]]
    ) -> None:
        """Bring the loaded versions toward what ``sources`` and their version policies want.

        ``stable`` lists the version folders whose files did not change since the last scan;
        only those are loaded (a folder still being copied waits).
        """
        if self._first_sources is None:
            self._first_sources = set(sources)
        self._repository = set(sources)
        for name, source in sources.items():
            if name in self._unloaded:
                continue
            model = self.models.setdefault(name, ManagedModel(name))
            self._update_model(model, source, stable)
        for name, model in list(self.models.items()):
            if name not in sources and model.source is not None:
                log.info("model %s: no longer in the repository; unloading it", name)
                self._remove(model)

    def _remove(self, model: ManagedModel) -> None:
        model.source = None
        model.target = set()
        self._settle(model)

    # ---- explicit control (Triton's model repository extension) ---------------------------

    def unload_model(self, name: str) -> None:
        """Unload every version of ``name`` and keep it unloaded until ``allow_model``."""
        if name not in self._repository and name not in self.models:
            raise ModelNotFound(f"model {name!r} is not in the repository")
        self._unloaded.add(name)
        model = self.models.get(name)
        if model is not None and model.source is not None:
            log.info("model %s: unloading on request", name)
            self._remove(model)

    def allow_model(self, name: str) -> None:
        """Let a model unloaded on request load again at the next scan."""
        self._unloaded.discard(name)

    def index(self) -> list[IndexEntry]:
        """Every model the repository holds, with each version's state (Triton's index)."""
        entries: list[IndexEntry] = []
        for name in sorted(self._repository | set(self.models)):
            model = self.models.get(name)
            if name in self._unloaded or model is None or model.source is None:
                reason = "unloaded on request" if name in self._unloaded else "not loaded"
                entries.append(IndexEntry(name, None, "UNAVAILABLE", reason))
                continue
            for version, mv in sorted(model.versions.items()):
                entries.append(IndexEntry(name, version, _INDEX_STATE[mv.state], mv.error or ""))
            if not model.versions:
                entries.append(IndexEntry(name, None, "UNAVAILABLE", "no version to serve"))
        return entries

    def served(self, name: str | None, version: int | None) -> list[ModelVersion]:
        """AVAILABLE versions: of every model, of one model, or one version of it."""
        if name is None:
            return [
                mv
                for _, model in sorted(self.models.items())
                for _, mv in sorted(model.versions.items())
                if mv.state is ModelState.AVAILABLE
            ]
        model = self._model(name)
        if version is not None:
            return [self._available(model, version)]
        return [mv for _, mv in sorted(model.versions.items()) if mv.state is ModelState.AVAILABLE]

    def _available(self, model: ManagedModel, version: int) -> ModelVersion:
        """The AVAILABLE version ``version`` of ``model``, without leasing it."""
        found = model.versions.get(version)
        if found is None:
            raise VersionNotFound(self._missing_version(model, version))
        if found.state is not ModelState.AVAILABLE:
            raise ModelNotReady(self._not_available(found))
        return found

    def _update_model(
        self, model: ManagedModel, source: ModelSource, stable: Collection[tuple[str, int]]
    ) -> None:
        model.source = source
        if source.config is not None:
            model.config = source.config
            model.labels = dict(source.config.labels)
        # While config.yaml is invalid, the last valid policy decides what keeps serving.
        config = model.config or ModelConfig()
        model.target = config.version_policy.select(set(source.versions))

        for version in sorted(model.target):
            folder = source.versions[version]
            current = model.versions.get(version)
            if current is not None and not self._should_retry(current, folder, source):
                continue
            if (model.name, version) not in stable or folder.empty:
                continue
            if source.config is None:
                self._record_config_failure(model, folder, source)
            else:
                self._start_load(model, folder, source.config, source.config_fingerprint)
        self._settle(model)

    @staticmethod
    def _should_retry(current: ModelVersion, folder: VersionFolder, source: ModelSource) -> bool:
        return current.state is ModelState.FAILED and (
            current.folder.fingerprint != folder.fingerprint
            or current.config_fingerprint != source.config_fingerprint
        )

    def _record_config_failure(
        self, model: ManagedModel, folder: VersionFolder, source: ModelSource
    ) -> None:
        current = model.versions.get(folder.version)
        if current is None:
            current = ModelVersion(
                model.name, folder.version, folder, ModelConfig(), source.config_fingerprint
            )
            model.versions[folder.version] = current
            current.move(ModelState.FAILED)
        current.folder = folder
        current.config_fingerprint = source.config_fingerprint
        current.error = source.config_error

    def _start_load(
        self, model: ManagedModel, folder: VersionFolder, config: ModelConfig, config_fp: str
    ) -> None:
        current = model.versions.get(folder.version)
        if current is None:
            current = ModelVersion(model.name, folder.version, folder, config, config_fp)
            model.versions[folder.version] = current
        current.folder, current.config, current.config_fingerprint = folder, config, config_fp
        current.error = None
        current.move(ModelState.LOADING)
        log.info("%s: loading from %s", current.context, folder.path)
        future = self._pool.submit(self._loader, folder, config, current.context)
        self._spawn(self._load(model, current, future), self._loads)

    async def _load(
        self, model: ManagedModel, mv: ModelVersion, future: Future[LoadedVersion]
    ) -> None:
        waiting = asyncio.wrap_future(future)

        done, _ = await asyncio.wait({waiting}, timeout=self._load_timeout_s)
        if not done:
            waiting.add_done_callback(_unload_late)
            self._fail(
                mv,
                f"loading did not finish within {self._load_timeout_s:g} s; raise "
                "load_timeout_s if the model is large",
            )
        else:
            try:
                mv.loaded = waiting.result()
            except ModelLoadError as exc:
                self._fail(mv, str(exc))
            except Exception as exc:
                log.exception("%s: unexpected error while loading", mv.context)
                self._fail(mv, f"unexpected error while loading: {exc}")
            else:
                if self._closing:
                    mv.loaded.runtime.unload()
                    mv.move(ModelState.FAILED)
                    mv.error = "the server shut down while this version was loading"
                    log.info("%s: finished loading after shutdown began; unloaded", mv.context)
                else:
                    if self._prepare is not None:
                        self._prepare(mv)
                    mv.move(ModelState.AVAILABLE)
                    log.info("%s: AVAILABLE", mv.context)

        model.refresh()
        self._settle(model)

    def _fail(self, mv: ModelVersion, error: str) -> None:
        mv.move(ModelState.FAILED)
        mv.error = error
        log.error("%s: failed to load: %s", mv.context, error)
        if self._on_load_failure is not None:
            self._on_load_failure(mv.model)

    def _settle(self, model: ManagedModel) -> None:
        """Retire what the target no longer needs, once every target version has settled."""
        versions = model.versions
        for version in model.target:
            current = versions.get(version)
            if current is None or current.state in _UNSETTLED:
                return

        failed = sum(1 for v in model.target if versions[v].state is ModelState.FAILED)
        present = set(model.source.versions) if model.source is not None else set()
        spares = sorted(
            (
                v
                for v, mv in versions.items()
                if v not in model.target and mv.state is ModelState.AVAILABLE and v in present
            ),
            reverse=True,
        )[:failed]
        for version, mv in list(versions.items()):
            if version in model.target or version in spares:
                continue
            if mv.state is ModelState.AVAILABLE:
                self._retire(model, mv)
            elif mv.state is ModelState.FAILED:
                mv.move(ModelState.END)
                del versions[version]
        model.refresh()
        self._forget_if_gone(model)

    def _retire(self, model: ManagedModel, mv: ModelVersion) -> None:
        mv.move(ModelState.UNLOADING)
        log.info("%s: UNLOADING (%d requests in flight)", mv.context, mv.inflight)
        self._spawn(self._drain_and_unload(model, mv), self._unloads)

    async def _drain_and_unload(self, model: ManagedModel, mv: ModelVersion) -> None:
        if mv.inflight:
            mv.idle = asyncio.Event()
            await mv.idle.wait()
        if mv.loaded is not None:
            await asyncio.get_running_loop().run_in_executor(self._pool, mv.loaded.runtime.unload)
        mv.move(ModelState.END)
        if model.versions.get(mv.version) is mv:
            del model.versions[mv.version]
        log.info("%s: unloaded", mv.context)
        self._reload_if_wanted_again(model, mv.version)
        self._forget_if_gone(model)

    def _reload_if_wanted_again(self, model: ManagedModel, version: int) -> None:
        """A version the target wants again after it began unloading: load it once more."""
        source = model.source
        if self._closing or source is None or version not in model.target:
            return
        folder = source.versions.get(version)
        if folder is not None and source.config is not None:
            log.info("%s: wanted again; loading it anew", f"model {model.name} version {version}")
            self._start_load(model, folder, source.config, source.config_fingerprint)

    def _forget_if_gone(self, model: ManagedModel) -> None:
        if model.source is None and not model.versions and self.models.get(model.name) is model:
            del self.models[model.name]

    @staticmethod
    def _spawn(coro: Coroutine[Any, Any, None], tasks: set[asyncio.Task[None]]) -> None:
        task = asyncio.ensure_future(coro)
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    # ---- start-up and shut-down -----------------------------------------------------------

    async def wait_idle(self) -> None:
        """Wait until no load or unload is under way."""
        while self._loads or self._unloads:
            await asyncio.gather(*self._loads, *self._unloads, return_exceptions=True)

    @property
    def loading(self) -> bool:
        """Whether a load is under way (its thread cannot be interrupted)."""
        return bool(self._loads)

    def finish_startup(self) -> list[str]:
        """Mark the first load done; return one line per model that has nothing to serve."""
        self._startup_models = self._first_sources or set()
        problems = []
        for name in sorted(self._startup_models):
            model = self.models.get(name)
            if model is not None and model.serving is None:
                problems.append(self._why_not_serving(model))
        return problems

    async def close(self) -> None:
        """Unload every version (requests are expected to have drained) and stop the threads.

        Loads under way are not waited for: what they build is freed when they finish.
        """
        self._closing = True
        for model in list(self.models.values()):
            model.source = None
            model.target = set()
            for mv in list(model.versions.values()):
                if mv.state is ModelState.AVAILABLE:
                    self._retire(model, mv)
        while self._unloads:
            await asyncio.gather(*self._unloads, return_exceptions=True)
        self._pool.shutdown(wait=False, cancel_futures=True)


def _unload_late(future: asyncio.Future[LoadedVersion]) -> None:
    """A load that finished after its timeout: free what it built."""
    if not future.cancelled() and future.exception() is None:
        future.result().runtime.unload()
