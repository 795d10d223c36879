"""Loading and unloading models on request (Triton's model repository extension).

A model unloaded on request stays unloaded, whatever its folder holds, until it is loaded on
request again. Loading rescans the repository at once, taking its folders as complete, and
waits for the model's versions to settle.
"""

from __future__ import annotations

from modelport.errors import ModelNotFound, Unavailable
from modelport.lifecycle.manager import ModelManager
from modelport.lifecycle.watcher import RepositoryWatcher

__all__ = ["RepositoryController"]


class RepositoryController:
    """Implements the dataplane's ``RepositoryControl`` over the watcher and the manager."""

    def __init__(self, watcher: RepositoryWatcher, manager: ModelManager) -> None:
        self._watcher = watcher
        self._manager = manager

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
