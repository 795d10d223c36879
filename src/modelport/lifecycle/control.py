"""Loading and unloading models on request (Triton's model repository extension), and
replacing a TF Serving model config (``ModelService/HandleReloadConfigRequest``).

A model unloaded on request stays unloaded, whatever its folder holds, until it is loaded on
request again. Loading rescans the repository at once, taking its folders as complete, and
waits for the model's versions to settle. Reloading the model config does the same for every
model of the new config, and unloads the models it no longer lists.
"""

from __future__ import annotations

import asyncio

from modelport.errors import FailedPrecondition, InvalidInput, ModelNotFound, Unavailable
from modelport.lifecycle.manager import ModelManager
from modelport.lifecycle.repository import RepositorySource
from modelport.lifecycle.tfconfig import ConfigEntry, ConfigFileRepository
from modelport.lifecycle.watcher import RepositoryWatcher

__all__ = ["RepositoryController"]


class RepositoryController:
    """Implements the dataplane's ``RepositoryControl`` over the watcher and the manager."""

    def __init__(
        self,
        watcher: RepositoryWatcher,
        manager: ModelManager,
        source: RepositorySource | None = None,
    ) -> None:
        self._watcher = watcher
        self._manager = manager
        #: What the watcher scans; a reloadable model config only if a ConfigFileRepository.
        self._source = source
        self._reloading = asyncio.Lock()

    async def load(self, name: str) -> None:
        """Load (or reload) ``name`` from the repository; raise if nothing of it serves."""
        self._manager.allow_model(name)
        await self._watcher.scan(initial=True)
        await self._manager.wait_idle()
        model = self._manager.models.get(name)
        if model is None or model.source is None:
            raise ModelNotFound(f"model {name!r} is not in the repository; add its folder first")
        if model.serving is None:
            raise Unavailable(self._manager.why_not_serving(name))

    async def unload(self, name: str) -> None:
        """Unload every version of ``name``, once their in-flight requests finish."""
        self._manager.unload_model(name)
        await self._manager.wait_idle()

    async def reload_config(self, config_text: str) -> None:
        """Serve exactly the models of a TF Serving model config (text format).

        Models it no longer lists are unloaded once their requests finish; new ones load.
        Returns when every load has settled; raises ``Unavailable`` naming the models of the
        new config that have nothing to serve (the others are served).
        """
        source = self._source
        if not isinstance(source, ConfigFileRepository):
            serves = f"; this one serves the {source.describe()}" if source is not None else ""
            raise FailedPrecondition(
                "reloading the model config needs a server started with --model_config_file"
                f"{serves}; restart it with --model_config_file FILE to change its models this way"
            )
        async with self._reloading:
            try:
                entries = source.replace(config_text)
            except ValueError as exc:
                raise InvalidInput(str(exc)) from exc
            for entry in entries:
                self._manager.allow_model(entry.name)
            await self._watcher.scan(initial=True)
            await self._manager.wait_idle()
            problems = [p for p in map(self._problem, entries) if p is not None]
        if problems:
            raise Unavailable(
                f"the model config is in force, but {len(problems)} of its "
                f"{len(entries)} models have nothing to serve: {'; '.join(problems)}"
            )

    def _problem(self, entry: ConfigEntry) -> str | None:
        """Why a model of a reloaded config does not serve, or None if it does."""
        model = self._manager.models.get(entry.name)
        if model is not None and model.serving is not None:
            return None
        if not entry.base_path.is_dir():
            return f"model {entry.name!r}: its base_path {entry.base_path} is not a folder"
        if model is None or model.source is None:
            return f"model {entry.name!r} was not loaded"
        return self._manager.why_not_serving(entry.name)
