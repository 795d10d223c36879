"""``ModelManager``: loading, serving, swapping and retiring versions, driven by a fake loader.

Each test runs its own event loop (``asyncio.run``); the fake loader builds ``MockRuntime``
versions in the manager's worker threads and can fail or hold chosen versions.
"""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import Awaitable, Callable

import numpy as np
import pytest

from modelport.core.dataplane import ServedVersion
from modelport.errors import (
    LabelNotFound,
    ModelNotFound,
    ModelNotReady,
    NotFound,
    VersionNotFound,
)
from modelport.lifecycle.manager import ModelManager, ModelVersion
from modelport.types import ModelState, VersionStatus

from .fakes import SIGNATURE, FakeLoader, apply, config, files, source, wait_until

AVAILABLE, FAILED, LOADING = ModelState.AVAILABLE, ModelState.FAILED, ModelState.LOADING
UNLOADING, END = ModelState.UNLOADING, ModelState.END

Scenario = Callable[[ModelManager, FakeLoader], Awaitable[None]]


def run(scenario: Scenario, **options: float | bool) -> None:
    """Run ``scenario`` with a fresh manager and loader; close the manager afterwards."""
    loader = FakeLoader()

    async def main() -> None:
        manager = ModelManager(loader, **options)  # type: ignore[arg-type]
        try:
            await scenario(manager, loader)
        finally:
            loader.release_all()
            await manager.close()

    asyncio.run(main())


def states(manager: ModelManager, name: str) -> dict[int, ModelState]:
    return {v: mv.state for v, mv in manager.models[name].versions.items()}


def serving(manager: ModelManager, name: str) -> int:
    """Which version answers a request naming none (taking and returning a lease)."""
    lease = manager.acquire(name, None, None)
    manager.release(lease)
    return lease.version


# ---- initial load and requests ----------------------------------------------------------------


def test_initial_load_makes_versions_available() -> None:
    async def scenario(manager: ModelManager, loader: FakeLoader) -> None:
        assert not manager.ready()
        await apply(
            manager,
            source("a", [1, 2], config(version_policy="all")),
            source("b", [3]),
        )
        assert manager.finish_startup() == []
        assert manager.ready()
        assert states(manager, "a") == {1: AVAILABLE, 2: AVAILABLE}
        assert states(manager, "b") == {3: AVAILABLE}
        assert sorted(loader.calls) == [
            "model a version 1",
            "model a version 2",
            "model b version 3",
        ]
        assert manager.model_names() == ["a", "b"]
        assert manager.available_versions("a") == [2, 1]
        assert manager.status("a", None, None) == [
            VersionStatus(2, AVAILABLE),
            VersionStatus(1, AVAILABLE),
        ]

    run(scenario)


def test_policy_decides_what_loads() -> None:
    async def scenario(manager: ModelManager, loader: FakeLoader) -> None:
        await apply(
            manager,
            source("latest", [1, 2, 3]),
            source("two", [1, 2, 3], config(version_policy={"latest": 2})),
            source("picked", [1, 2, 3], config(version_policy={"specific": [1, 3, 9]})),
        )
        assert states(manager, "latest") == {3: AVAILABLE}
        assert states(manager, "two") == {2: AVAILABLE, 3: AVAILABLE}
        assert states(manager, "picked") == {1: AVAILABLE, 3: AVAILABLE}
        assert len(loader.calls) == 5

    run(scenario)


def test_acquire_without_version_returns_newest_available() -> None:
    async def scenario(manager: ModelManager, loader: FakeLoader) -> None:
        loader.fail("m", 3)
        await apply(manager, source("m", [1, 2, 3], config(version_policy="all")))
        lease = manager.acquire("m", None, None)
        try:
            assert isinstance(lease, ModelVersion)
            assert (lease.model, lease.version) == ("m", 2)
            assert lease.state is AVAILABLE
            assert lease.signature == SIGNATURE
            assert lease.runtime is loader.runtime("m", 2)
            assert lease.platform == "mock"
            out = lease.runtime.infer({"x": np.zeros((1, 1), np.float32)}, ["y"])
            assert out["y"].tolist() == [[2.0]]
            assert lease.inflight == 1
        finally:
            manager.release(lease)
        assert lease.inflight == 0

    run(scenario)


def test_acquire_named_version() -> None:
    async def scenario(manager: ModelManager, loader: FakeLoader) -> None:
        await apply(manager, source("m", [1, 2], config(version_policy="all")))
        lease = manager.acquire("m", 1, None)
        manager.release(lease)
        assert lease.version == 1
        served: ServedVersion = lease
        assert served.config.version_policy.kind == "all"

    run(scenario)


def test_labels() -> None:
    async def scenario(manager: ModelManager, loader: FakeLoader) -> None:
        cfg = config(version_policy={"latest": 2}, labels={"stable": 1, "canary": 2})
        await apply(manager, source("m", [1, 2], cfg))
        for label, version in (("stable", 1), ("canary", 2)):
            lease = manager.acquire("m", None, label)
            manager.release(lease)
            assert lease.version == version
            assert manager.status("m", None, label) == [VersionStatus(version, AVAILABLE)]
        lease = manager.acquire("m", 2, "stable")  # the label wins over a version
        manager.release(lease)
        assert lease.version == 1
        # labels follow the config without reloading anything
        cfg = config(version_policy={"latest": 2}, labels={"stable": 2})
        await apply(manager, source("m", [1, 2], cfg))
        lease = manager.acquire("m", None, "stable")
        manager.release(lease)
        assert lease.version == 2
        with pytest.raises(LabelNotFound):
            manager.acquire("m", None, "canary")
        assert len(loader.calls) == 2

    run(scenario)


def test_unknown_model_raises_model_not_found() -> None:
    async def scenario(manager: ModelManager, loader: FakeLoader) -> None:
        await apply(manager, source("mnist", [1]), source("tabular", [1]))
        with pytest.raises(ModelNotFound) as info:
            manager.acquire("mnsit", None, None)
        assert info.value.message == (
            "model 'mnsit' is not in the repository; models served: mnist, tabular"
        )
        assert isinstance(info.value, NotFound)
        with pytest.raises(ModelNotFound):
            manager.status("mnsit", None, None)
        with pytest.raises(ModelNotFound):
            manager.available_versions("mnsit")

    run(scenario)


def test_unknown_model_in_empty_manager() -> None:
    async def scenario(manager: ModelManager, loader: FakeLoader) -> None:
        with pytest.raises(ModelNotFound, match=r"models served: none$"):
            manager.acquire("m", None, None)

    run(scenario)


def test_unknown_version_raises_version_not_found() -> None:
    async def scenario(manager: ModelManager, loader: FakeLoader) -> None:
        await apply(manager, source("m", [1, 2, 3], config(version_policy={"latest": 2})))
        with pytest.raises(VersionNotFound) as info:
            manager.acquire("m", 7, None)
        assert info.value.message == "model 'm' has no version 7; versions: 2, 3"
        with pytest.raises(VersionNotFound) as info:
            manager.acquire("m", 1, None)
        assert info.value.message == (
            "model 'm' has no version 1 (its folder exists, but the version policy is latest 2); "
            "versions: 2, 3"
        )
        with pytest.raises(VersionNotFound, match="has no version 1 "):
            manager.status("m", 1, None)

    run(scenario)


def test_unknown_label_raises_label_not_found() -> None:
    async def scenario(manager: ModelManager, loader: FakeLoader) -> None:
        await apply(
            manager,
            source("m", [1], config(labels={"stable": 1, "beta": 1})),
            source("plain", [1]),
        )
        with pytest.raises(LabelNotFound) as info:
            manager.acquire("m", None, "canary")
        assert info.value.message == (
            "model 'm' has no version label 'canary'; its labels: beta, stable"
        )
        with pytest.raises(LabelNotFound, match=r"its labels: none$"):
            manager.status("plain", None, "canary")

    run(scenario)


def test_label_to_version_not_loaded() -> None:
    async def scenario(manager: ModelManager, loader: FakeLoader) -> None:
        await apply(manager, source("m", [1, 2], config(labels={"old": 1})))
        with pytest.raises(VersionNotFound, match=r"has no version 1 .*latest 1"):
            manager.acquire("m", None, "old")

    run(scenario)


def test_failed_version_named_explicitly_is_not_ready() -> None:
    async def scenario(manager: ModelManager, loader: FakeLoader) -> None:
        loader.fail("m", 2, "bad weights")
        await apply(manager, source("m", [1, 2], config(version_policy="all")))
        with pytest.raises(ModelNotReady) as info:
            manager.acquire("m", 2, None)
        assert info.value.message == "model m version 2 failed to load: bad weights"
        assert manager.status("m", 2, None) == [VersionStatus(2, FAILED, "bad weights")]

    run(scenario)


def test_model_with_nothing_to_serve_says_why() -> None:
    async def scenario(manager: ModelManager, loader: FakeLoader) -> None:
        await apply(manager, source("empty", []))
        with pytest.raises(ModelNotReady) as info:
            manager.acquire("empty", None, None)
        assert info.value.message == (
            "model 'empty' has no version to serve; add a version folder such as 1/"
        )
        loader.fail("broken", 1, "no good")
        await apply(manager, source("empty", []), source("broken", [1]))
        with pytest.raises(ModelNotReady) as info:
            manager.acquire("broken", None, None)
        assert info.value.message == (
            "model 'broken' has no available version: model broken version 1 failed to load: "
            "no good"
        )

    run(scenario)


def test_loading_version_is_not_ready_yet() -> None:
    async def scenario(manager: ModelManager, loader: FakeLoader) -> None:
        gate = loader.gate("m", 1)
        await apply(manager, source("m", [1]), wait=False)
        assert states(manager, "m") == {1: LOADING}
        with pytest.raises(ModelNotReady, match=r"^model 'm' is loading; retry shortly$"):
            manager.acquire("m", None, None)
        with pytest.raises(ModelNotReady, match=r"is not available \(state LOADING\)"):
            manager.acquire("m", 1, None)
        assert manager.status("m", None, None) == [VersionStatus(1, LOADING)]
        gate.set()
        await manager.wait_idle()
        assert serving(manager, "m") == 1

    run(scenario)


def test_busy_versions() -> None:
    async def scenario(manager: ModelManager, loader: FakeLoader) -> None:
        await apply(manager, source("a", [1]), source("b", [4]))
        assert manager.busy_versions() == []
        first = manager.acquire("a", None, None)
        second = manager.acquire("a", 1, None)
        third = manager.acquire("b", None, None)
        assert sorted(manager.busy_versions()) == [
            "model a version 1 (2 requests)",
            "model b version 4 (1 requests)",
        ]
        for lease in (first, second, third):
            manager.release(lease)
        assert manager.busy_versions() == []

    run(scenario)


# ---- swapping versions ------------------------------------------------------------------------


def test_new_version_replaces_old_only_once_available() -> None:
    async def scenario(manager: ModelManager, loader: FakeLoader) -> None:
        await apply(manager, source("m", [1]))
        old = loader.runtime("m", 1)
        gate = loader.gate("m", 2)
        await apply(manager, source("m", [1, 2]), wait=False)
        await wait_until(lambda: loader.count("m", 2) == 1, "the loader to start version 2")
        assert states(manager, "m") == {1: AVAILABLE, 2: LOADING}
        for _ in range(5):  # the old version keeps serving, however often the loop turns
            await asyncio.sleep(0)
            assert serving(manager, "m") == 1
        await apply(manager, source("m", [1, 2]), wait=False)  # a poll while it loads
        assert serving(manager, "m") == 1
        assert loader.count("m", 2) == 1
        gate.set()
        await wait_until(lambda: manager.models["m"].versions[2].state is AVAILABLE)
        assert serving(manager, "m") == 2
        await manager.wait_idle()
        assert states(manager, "m") == {2: AVAILABLE}
        assert old.unloaded
        assert not loader.runtime("m", 2).unloaded

    run(scenario)


def test_lease_keeps_old_version_until_release() -> None:
    async def scenario(manager: ModelManager, loader: FakeLoader) -> None:
        await apply(manager, source("m", [1]))
        lease = manager.acquire("m", None, None)
        await apply(manager, source("m", [1, 2]), wait=False)
        await wait_until(lambda: lease.state is UNLOADING, "version 1 to start unloading")
        assert serving(manager, "m") == 2
        assert isinstance(lease, ModelVersion)
        await wait_until(lambda: lease.idle is not None, "the drain to wait for the lease")
        for _ in range(5):
            await asyncio.sleep(0)
        assert lease.state is UNLOADING
        assert not loader.runtime("m", 1).unloaded
        assert manager.busy_versions() == ["model m version 1 (1 requests)"]
        assert manager.status("m", 1, None) == [VersionStatus(1, UNLOADING)]
        assert manager.available_versions("m") == [2]
        with pytest.raises(ModelNotReady, match=r"state UNLOADING"):
            manager.acquire("m", 1, None)
        # the request in flight can still use its engine
        out = lease.runtime.infer({"x": np.zeros((1, 1), np.float32)}, ["y"])
        assert out["y"].tolist() == [[1.0]]
        manager.release(lease)
        await manager.wait_idle()
        assert lease.state is END
        assert loader.runtime("m", 1).unloaded
        assert states(manager, "m") == {2: AVAILABLE}

    run(scenario)


def test_several_leases_all_must_end() -> None:
    async def scenario(manager: ModelManager, loader: FakeLoader) -> None:
        await apply(manager, source("m", [1]))
        leases = [manager.acquire("m", None, None) for _ in range(3)]
        await apply(manager, source("m", [1, 2]), wait=False)
        await wait_until(lambda: leases[0].state is UNLOADING)
        for lease in leases[:2]:
            manager.release(lease)
        for _ in range(5):
            await asyncio.sleep(0)
        assert leases[0].state is UNLOADING
        assert not loader.runtime("m", 1).unloaded
        manager.release(leases[2])
        await manager.wait_idle()
        assert loader.runtime("m", 1).unloaded

    run(scenario)


def test_failing_new_version_keeps_old_serving() -> None:
    async def scenario(manager: ModelManager, loader: FakeLoader) -> None:
        await apply(manager, source("m", [1]))
        assert manager.finish_startup() == []
        loader.fail("m", 2, "truncated model.onnx")
        await apply(manager, source("m", [1, 2]))
        assert states(manager, "m") == {1: AVAILABLE, 2: FAILED}
        assert serving(manager, "m") == 1
        assert manager.status("m", None, None) == [
            VersionStatus(2, FAILED, "truncated model.onnx"),
            VersionStatus(1, AVAILABLE),
        ]
        assert not loader.runtime("m", 1).unloaded
        assert manager.ready()

    run(scenario)


def test_failed_version_retried_only_when_files_change() -> None:
    async def scenario(manager: ModelManager, loader: FakeLoader) -> None:
        await apply(manager, source("m", [1]))
        loader.fail("m", 2)
        await apply(manager, source("m", {1: files(), 2: files("a")}))
        for _ in range(3):  # polls that see the same files do not retry
            await apply(manager, source("m", {1: files(), 2: files("a")}))
        assert loader.count("m", 2) == 1
        assert states(manager, "m") == {1: AVAILABLE, 2: FAILED}
        loader.heal("m", 2)
        await apply(manager, source("m", {1: files(), 2: files("a", size=11)}))
        assert loader.count("m", 2) == 2
        assert states(manager, "m") == {2: AVAILABLE}
        assert manager.status("m", 2, None) == [VersionStatus(2, AVAILABLE, None)]
        assert loader.runtime("m", 1).unloaded

    run(scenario)


def test_failed_version_retried_when_config_changes() -> None:
    async def scenario(manager: ModelManager, loader: FakeLoader) -> None:
        await apply(manager, source("m", [1]))
        loader.fail("m", 2)
        await apply(manager, source("m", [1, 2]))
        # labels and policy are not part of the config fingerprint: no retry
        await apply(manager, source("m", [1, 2], config(labels={"x": 1})))
        assert loader.count("m", 2) == 1
        # a setting that shapes the loaded version is
        await apply(manager, source("m", [1, 2], config(warmup={"enabled": False})))
        assert loader.count("m", 2) == 2
        assert states(manager, "m") == {1: AVAILABLE, 2: FAILED}
        await apply(manager, source("m", [1, 2], config(warmup={"enabled": False})))
        assert loader.count("m", 2) == 2

    run(scenario)


def test_retry_that_fails_again_keeps_old_serving_and_new_error() -> None:
    async def scenario(manager: ModelManager, loader: FakeLoader) -> None:
        await apply(manager, source("m", [1]))
        loader.fail("m", 2, "first problem")
        await apply(manager, source("m", {1: files(), 2: files("a")}))
        loader.fail("m", 2, "second problem")
        await apply(manager, source("m", {1: files(), 2: files("b")}))
        assert manager.status("m", 2, None) == [VersionStatus(2, FAILED, "second problem")]
        assert serving(manager, "m") == 1

    run(scenario)


def test_newer_good_version_replaces_failed_and_old() -> None:
    async def scenario(manager: ModelManager, loader: FakeLoader) -> None:
        await apply(manager, source("m", [1]))
        loader.fail("m", 2)
        await apply(manager, source("m", [1, 2]))
        await apply(manager, source("m", [1, 2, 3]))
        assert states(manager, "m") == {3: AVAILABLE}
        assert loader.runtime("m", 1).unloaded

    run(scenario)


def test_failing_version_among_several_targets_is_covered_by_one_spare() -> None:
    async def scenario(manager: ModelManager, loader: FakeLoader) -> None:
        cfg = config(version_policy={"latest": 2})
        await apply(manager, source("m", [1, 2], cfg))
        loader.fail("m", 4)
        await apply(manager, source("m", [1, 2, 3, 4], cfg))
        # target {3, 4}: 4 failed, so the newest version outside the target (2) stays
        assert states(manager, "m") == {2: AVAILABLE, 3: AVAILABLE, 4: FAILED}
        assert serving(manager, "m") == 3
        assert loader.runtime("m", 1).unloaded
        assert not loader.runtime("m", 2).unloaded

    run(scenario)


def test_unexpected_loader_exception_marks_failed() -> None:
    async def scenario(manager: ModelManager, loader: FakeLoader) -> None:
        loader.crash("m", 1, KeyError("weights"))
        await apply(manager, source("m", [1]))
        (status,) = manager.status("m", None, None)
        assert status.state is FAILED
        assert status.error == "unexpected error while loading: 'weights'"

    run(scenario)


def test_version_folder_removed_falls_back_to_remaining() -> None:
    async def scenario(manager: ModelManager, loader: FakeLoader) -> None:
        await apply(manager, source("m", [1]))
        await apply(manager, source("m", [1, 2]))
        assert states(manager, "m") == {2: AVAILABLE}
        await apply(manager, source("m", [1]))
        assert states(manager, "m") == {1: AVAILABLE}
        assert loader.count("m", 1) == 2
        assert loader.runtime("m", 2).unloaded

    run(scenario)


def test_rollback_while_old_version_drains_keeps_serving() -> None:
    async def scenario(manager: ModelManager, loader: FakeLoader) -> None:
        await apply(manager, source("m", [1]))
        lease = manager.acquire("m", None, None)
        await apply(manager, source("m", [1, 2]), wait=False)
        await wait_until(lambda: lease.state is UNLOADING)
        await wait_until(lambda: states(manager, "m").get(2) is AVAILABLE)
        # version 2 is withdrawn while version 1 still drains a request
        await apply(manager, source("m", [1]), wait=False)
        try:
            assert serving(manager, "m") == 2  # v2 must serve until v1 is back
        finally:
            manager.release(lease)

    run(scenario)


def test_versions_not_stable_are_not_loaded() -> None:
    async def scenario(manager: ModelManager, loader: FakeLoader) -> None:
        await apply(manager, source("m", [1]))
        await apply(manager, source("m", [1, 2]), stable={("m", 1)})
        assert loader.count("m", 2) == 0
        assert states(manager, "m") == {1: AVAILABLE}
        assert serving(manager, "m") == 1
        await apply(manager, source("m", [1, 2]))
        assert states(manager, "m") == {2: AVAILABLE}

    run(scenario)


def test_empty_version_folder_is_not_loaded() -> None:
    async def scenario(manager: ModelManager, loader: FakeLoader) -> None:
        await apply(manager, source("m", [1]))
        await apply(manager, source("m", {1: files(), 2: ()}))
        assert loader.count("m", 2) == 0
        assert states(manager, "m") == {1: AVAILABLE}

    run(scenario)


# ---- models leaving -----------------------------------------------------------------------------


def test_removed_model_is_unloaded_and_forgotten() -> None:
    async def scenario(manager: ModelManager, loader: FakeLoader) -> None:
        loader.fail("b", 2)
        await apply(manager, source("a", [1]), source("b", [1, 2], config(version_policy="all")))
        await apply(manager, source("a", [1]))
        assert manager.model_names() == ["a"]
        assert "b" not in manager.models
        assert loader.runtime("b", 1).unloaded
        assert not loader.runtime("a", 1).unloaded
        with pytest.raises(ModelNotFound):
            manager.acquire("b", None, None)
        with pytest.raises(ModelNotFound, match=r"models served: a$"):
            manager.status("b", None, None)

    run(scenario)


def test_removed_model_drains_its_leases_first() -> None:
    async def scenario(manager: ModelManager, loader: FakeLoader) -> None:
        await apply(manager, source("m", [1]))
        lease = manager.acquire("m", None, None)
        await apply(manager, source("other", [1]), wait=False)
        with pytest.raises(ModelNotFound):
            manager.acquire("m", None, None)
        await wait_until(lambda: lease.state is UNLOADING)
        assert manager.models["m"].source is None
        assert not loader.runtime("m", 1).unloaded
        manager.release(lease)
        await wait_until(lambda: "m" not in manager.models, "model m to be forgotten")
        assert loader.runtime("m", 1).unloaded

    run(scenario)


def test_model_removed_while_loading_is_unloaded_after_load() -> None:
    async def scenario(manager: ModelManager, loader: FakeLoader) -> None:
        gate = loader.gate("m", 1)
        await apply(manager, source("m", [1]), wait=False)
        await apply(manager, wait=False)
        assert manager.model_names() == []
        gate.set()
        await manager.wait_idle()
        assert "m" not in manager.models
        assert loader.runtime("m", 1).unloaded

    run(scenario)


def test_removed_model_can_come_back() -> None:
    async def scenario(manager: ModelManager, loader: FakeLoader) -> None:
        await apply(manager, source("m", [1]))
        await apply(manager)
        assert "m" not in manager.models
        await apply(manager, source("m", [1]))
        assert serving(manager, "m") == 1
        assert loader.count("m", 1) == 2

    run(scenario)


# ---- config errors ------------------------------------------------------------------------------

BROKEN = "invalid config.yaml: versoin_policy: Extra inputs are not permitted"


def test_config_error_fails_new_versions_without_loading_and_keeps_loaded() -> None:
    async def scenario(manager: ModelManager, loader: FakeLoader) -> None:
        await apply(manager, source("m", [1]))
        await apply(manager, source("m", [1, 2], config_error=BROKEN))
        assert loader.count("m", 2) == 0
        assert states(manager, "m") == {1: AVAILABLE, 2: FAILED}
        assert manager.status("m", 2, None) == [VersionStatus(2, FAILED, BROKEN)]
        assert serving(manager, "m") == 1
        assert not loader.runtime("m", 1).unloaded
        # polls with the same broken config change nothing
        await apply(manager, source("m", [1, 2], config_error=BROKEN))
        assert loader.count("m", 2) == 0
        # fixing the config retries the version
        await apply(manager, source("m", [1, 2]))
        assert loader.count("m", 2) == 1
        assert states(manager, "m") == {2: AVAILABLE}

    run(scenario)


def test_config_error_at_start_reports_the_error() -> None:
    async def scenario(manager: ModelManager, loader: FakeLoader) -> None:
        await apply(manager, source("m", [1], config_error=BROKEN), source("ok", [1]))
        assert loader.calls == ["model ok version 1"]
        assert manager.status("m", None, None) == [VersionStatus(1, FAILED, BROKEN)]
        problems = manager.finish_startup()
        assert problems == [
            f"model 'm' has no available version: model m version 1 failed to load: {BROKEN}"
        ]
        assert not manager.ready()

    run(scenario)


def test_config_error_replaces_load_error_and_clears_on_fix() -> None:
    async def scenario(manager: ModelManager, loader: FakeLoader) -> None:
        loader.fail("m", 1, "engine says no")
        await apply(manager, source("m", [1]))
        await apply(manager, source("m", [1], config_error=BROKEN))
        assert manager.status("m", 1, None) == [VersionStatus(1, FAILED, BROKEN)]
        assert loader.count("m", 1) == 1
        loader.heal("m", 1)
        await apply(manager, source("m", [1]))
        assert manager.status("m", 1, None) == [VersionStatus(1, AVAILABLE)]

    run(scenario)


def test_config_error_keeps_labels() -> None:
    async def scenario(manager: ModelManager, loader: FakeLoader) -> None:
        await apply(manager, source("m", [1], config(labels={"stable": 1})))
        await apply(manager, source("m", [1], config_error=BROKEN))
        lease = manager.acquire("m", None, "stable")
        manager.release(lease)
        assert lease.version == 1

    run(scenario)


def test_config_error_keeps_every_loaded_version() -> None:
    async def scenario(manager: ModelManager, loader: FakeLoader) -> None:
        cfg = config(version_policy={"latest": 2}, labels={"stable": 1, "canary": 2})
        await apply(manager, source("m", [1, 2], cfg))
        await apply(manager, source("m", [1, 2], config_error=BROKEN))
        assert states(manager, "m") == {1: AVAILABLE, 2: AVAILABLE}
        lease = manager.acquire("m", None, "stable")
        manager.release(lease)
        assert lease.version == 1

    run(scenario)


# ---- load timeout -------------------------------------------------------------------------------


def test_load_timeout_marks_failed_and_unloads_late_result() -> None:
    async def scenario(manager: ModelManager, loader: FakeLoader) -> None:
        gate = loader.gate("m", 1)
        await apply(manager, source("m", [1]))  # returns once the timeout fired
        (status,) = manager.status("m", None, None)
        assert status.state is FAILED
        assert status.error == (
            "loading did not finish within 0.05 s; raise load_timeout_s if the model is large"
        )
        with pytest.raises(ModelNotReady, match="did not finish within"):
            manager.acquire("m", None, None)
        # the load finishing later frees what it built
        gate.set()
        await wait_until(lambda: "model m version 1" in loader.runtimes, "the late load")
        await wait_until(lambda: loader.runtime("m", 1).unloaded, "the late load to unload")
        assert states(manager, "m") == {1: FAILED}
        # the same files are not retried
        await apply(manager, source("m", [1]))
        assert loader.count("m", 1) == 1

    run(scenario, load_timeout_s=0.05)


def test_load_timeout_keeps_old_version_serving() -> None:
    async def scenario(manager: ModelManager, loader: FakeLoader) -> None:
        await apply(manager, source("m", [1]))
        loader.gate("m", 2)
        await apply(manager, source("m", [1, 2]))
        assert states(manager, "m") == {1: AVAILABLE, 2: FAILED}
        assert serving(manager, "m") == 1

    run(scenario, load_timeout_s=0.05)


def test_late_failure_after_timeout_changes_nothing(caplog: pytest.LogCaptureFixture) -> None:
    async def scenario(manager: ModelManager, loader: FakeLoader) -> None:
        gate = loader.gate("m", 1)
        loader.fail("m", 1, "late failure")
        await apply(manager, source("m", [1]))
        gate.set()
        await wait_until(lambda: loader.finished == ["model m version 1"], "the late load")
        for _ in range(5):
            await asyncio.sleep(0)
        (status,) = manager.status("m", None, None)
        assert status.state is FAILED
        assert status.error is not None
        assert status.error.startswith("loading did not finish within")

    run(scenario, load_timeout_s=0.05)
    gc.collect()
    assert not [r for r in caplog.records if "never retrieved" in r.getMessage()]


# ---- readiness ----------------------------------------------------------------------------------


def test_not_ready_before_startup_finishes() -> None:
    async def scenario(manager: ModelManager, loader: FakeLoader) -> None:
        await apply(manager, source("m", [1]))
        assert not manager.ready()
        manager.finish_startup()
        assert manager.ready()

    run(scenario)


def test_strict_readiness_needs_every_startup_model() -> None:
    async def scenario(manager: ModelManager, loader: FakeLoader) -> None:
        loader.fail("bad", 1, "nope")
        await apply(manager, source("good", [1]), source("bad", [1]), source("empty", []))
        problems = manager.finish_startup()
        assert problems == [
            "model 'bad' has no available version: model bad version 1 failed to load: nope",
            "model 'empty' has no version to serve; add a version folder such as 1/",
        ]
        assert not manager.ready()
        # fixing the broken model makes the server ready
        loader.heal("bad", 1)
        await apply(
            manager,
            source("good", [1]),
            source("bad", {1: files("fixed")}),
            source("empty", []),
        )
        assert not manager.ready()  # still nothing for "empty"
        await apply(manager, source("good", [1]), source("bad", {1: files("fixed")}))
        assert manager.ready()  # a startup model that left no longer counts

    run(scenario)


def test_non_strict_readiness_ignores_failures() -> None:
    async def scenario(manager: ModelManager, loader: FakeLoader) -> None:
        loader.fail("bad", 1)
        await apply(manager, source("good", [1]), source("bad", [1]))
        assert len(manager.finish_startup()) == 1
        assert manager.ready()

    run(scenario, strict_readiness=False)


def test_models_added_later_do_not_affect_readiness() -> None:
    async def scenario(manager: ModelManager, loader: FakeLoader) -> None:
        await apply(manager, source("first", [1]))
        assert manager.finish_startup() == []
        loader.fail("later", 1)
        loader.gate("slow", 1)
        await apply(
            manager, source("first", [1]), source("later", [1]), source("slow", [1]), wait=False
        )
        assert manager.ready()
        await wait_until(lambda: states(manager, "later") == {1: FAILED})
        assert manager.ready()
        assert manager.model_names() == ["first", "later", "slow"]

    run(scenario)


def test_versions_failing_later_do_not_affect_readiness() -> None:
    async def scenario(manager: ModelManager, loader: FakeLoader) -> None:
        await apply(manager, source("m", [1]))
        manager.finish_startup()
        loader.fail("m", 2)
        await apply(manager, source("m", [1, 2]))
        assert manager.ready()

    run(scenario)


def test_readiness_uses_the_first_scan_models() -> None:
    async def scenario(manager: ModelManager, loader: FakeLoader) -> None:
        loader.gate("m", 1)
        await apply(manager, source("m", [1]), wait=False)
        assert manager.finish_startup() == ["model 'm' is loading; retry shortly"]
        assert not manager.ready()
        loader.release_all()
        await manager.wait_idle()
        assert manager.ready()

    run(scenario)


def test_finish_startup_without_any_scan() -> None:
    async def scenario(manager: ModelManager, loader: FakeLoader) -> None:
        assert manager.finish_startup() == []
        assert manager.ready()

    run(scenario)


# ---- close --------------------------------------------------------------------------------------


def test_close_unloads_everything() -> None:
    loader = FakeLoader()

    async def main() -> None:
        manager = ModelManager(loader)
        await apply(
            manager,
            source("a", [1, 2], config(version_policy="all")),
            source("b", [1]),
        )
        await manager.close()
        assert manager.models == {}
        for runtimes in loader.runtimes.values():
            assert all(runtime.unloaded for runtime in runtimes)
        assert len(loader.runtimes) == 3

    asyncio.run(main())


def test_close_does_not_wait_for_a_load_in_progress_and_frees_it_later() -> None:
    loader = FakeLoader()

    async def main() -> None:
        manager = ModelManager(loader)
        gate = loader.gate("m", 1)
        await apply(manager, source("m", [1]), wait=False)
        await manager.close()
        assert manager.loading
        gate.set()
        await wait_until(lambda: not manager.loading, "the load to finish")
        assert loader.runtime("m", 1).unloaded
        assert manager.models == {}

    asyncio.run(main())


def test_close_logs_nothing_alarming(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="modelport.lifecycle.manager")

    async def scenario(manager: ModelManager, loader: FakeLoader) -> None:
        await apply(manager, source("m", [1]))

    run(scenario)
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []
    assert any(r.getMessage() == "model m version 1: unloaded" for r in caplog.records)
