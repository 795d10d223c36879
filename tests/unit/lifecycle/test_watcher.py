"""``RepositoryWatcher`` over a real ``DirectoryRepository`` and a manager with a fake loader."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from modelport.lifecycle.manager import ModelManager
from modelport.lifecycle.repository import (
    DirectoryRepository,
    ModelSource,
    RepositorySource,
    ScanError,
)
from modelport.lifecycle.watcher import RepositoryWatcher
from modelport.types import ModelState

from .fakes import FakeLoader, wait_until

AVAILABLE, FAILED = ModelState.AVAILABLE, ModelState.FAILED
WATCHER_LOG = "modelport.lifecycle.watcher"

Scenario = Callable[[ModelManager, FakeLoader], Awaitable[None]]


def run(scenario: Scenario) -> None:
    loader = FakeLoader()

    async def main() -> None:
        manager = ModelManager(loader)
        try:
            await scenario(manager, loader)
        finally:
            loader.release_all()
            await manager.close()

    asyncio.run(main())


def publish(root: Path, model: str, version: int, content: bytes = b"model") -> Path:
    path = root / model / str(version) / "model.mock"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return path


def states(manager: ModelManager, name: str) -> dict[int, ModelState]:
    return {v: mv.state for v, mv in manager.models[name].versions.items()}


async def scan(watcher: RepositoryWatcher, manager: ModelManager, initial: bool = False) -> None:
    await watcher.scan(initial=initial)
    await manager.wait_idle()


@pytest.fixture
def root(tmp_path: Path) -> Path:
    root = tmp_path / "models"
    root.mkdir()
    return root


def test_first_scan_loads_everything(root: Path) -> None:
    publish(root, "a", 1)
    publish(root, "a", 2)
    (root / "a" / "config.yaml").write_text("version_policy: all\n", encoding="utf-8")
    publish(root, "b", 5)

    async def scenario(manager: ModelManager, loader: FakeLoader) -> None:
        watcher = RepositoryWatcher(DirectoryRepository(root), manager, poll_interval_s=0)
        await scan(watcher, manager, initial=True)
        assert states(manager, "a") == {1: AVAILABLE, 2: AVAILABLE}
        assert states(manager, "b") == {5: AVAILABLE}
        assert sorted(loader.calls) == [
            "model a version 1",
            "model a version 2",
            "model b version 5",
        ]
        assert manager.finish_startup() == []
        assert manager.ready()

    run(scenario)


def test_scan_that_is_not_initial_waits_for_a_second_look(root: Path) -> None:
    publish(root, "a", 1)

    async def scenario(manager: ModelManager, loader: FakeLoader) -> None:
        watcher = RepositoryWatcher(DirectoryRepository(root), manager, poll_interval_s=0)
        await scan(watcher, manager)
        assert loader.calls == []
        assert manager.model_names() == ["a"]
        await scan(watcher, manager)
        assert states(manager, "a") == {1: AVAILABLE}

    run(scenario)


def test_changing_version_folder_waits_until_unchanged(root: Path) -> None:
    publish(root, "m", 1)

    async def scenario(manager: ModelManager, loader: FakeLoader) -> None:
        watcher = RepositoryWatcher(DirectoryRepository(root), manager, poll_interval_s=0)
        await scan(watcher, manager, initial=True)
        path = publish(root, "m", 2, b"first half")
        await scan(watcher, manager)  # new: not seen before
        assert loader.count("m", 2) == 0
        with path.open("ab") as file:
            file.write(b" and the second half")
        await scan(watcher, manager)  # changed since the last scan
        assert loader.count("m", 2) == 0
        publish(root, "m", 2, b"first half and the second half!")
        (root / "m" / "2" / "extra.bin").write_bytes(b"x")
        await scan(watcher, manager)  # changed again
        assert loader.count("m", 2) == 0
        assert states(manager, "m") == {1: AVAILABLE}
        lease = manager.acquire("m", None, None)
        manager.release(lease)
        assert lease.version == 1
        await scan(watcher, manager)  # unchanged: complete
        assert loader.count("m", 2) == 1
        assert states(manager, "m") == {2: AVAILABLE}
        assert loader.runtime("m", 1).unloaded

    run(scenario)


def test_renamed_in_version_loads_after_one_stable_look(root: Path) -> None:
    publish(root, "m", 1)

    async def scenario(manager: ModelManager, loader: FakeLoader) -> None:
        watcher = RepositoryWatcher(DirectoryRepository(root), manager, poll_interval_s=0)
        await scan(watcher, manager, initial=True)
        incoming = root / "m" / ".incoming-2"
        incoming.mkdir()
        (incoming / "model.mock").write_bytes(b"model")
        await scan(watcher, manager)  # not a version folder: ignored
        assert manager.models["m"].source is not None
        assert sorted(manager.models["m"].source.versions) == [1]
        incoming.rename(root / "m" / "2")
        await scan(watcher, manager)
        assert loader.count("m", 2) == 0
        await scan(watcher, manager)
        assert loader.count("m", 2) == 1

    run(scenario)


def test_scan_error_keeps_state(root: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=WATCHER_LOG)
    publish(root, "m", 1)
    hidden = root.with_name("elsewhere")

    async def scenario(manager: ModelManager, loader: FakeLoader) -> None:
        watcher = RepositoryWatcher(DirectoryRepository(root), manager, poll_interval_s=0)
        await scan(watcher, manager, initial=True)
        root.rename(hidden)
        await scan(watcher, manager)
        await scan(watcher, manager)
        assert manager.model_names() == ["m"]
        assert states(manager, "m") == {1: AVAILABLE}
        assert not loader.runtime("m", 1).unloaded
        errors = [r for r in caplog.records if r.levelno == logging.ERROR]
        assert len(errors) == 1
        assert errors[0].getMessage().startswith(f"cannot read the model repository {root}")
        assert errors[0].getMessage().endswith("; keeping the models loaded now")
        hidden.rename(root)
        await scan(watcher, manager)
        assert [r.getMessage() for r in caplog.records if r.levelno == logging.INFO] == [
            f"model repository {root} is readable again"
        ]
        assert states(manager, "m") == {1: AVAILABLE}
        assert loader.calls == ["model m version 1"]

    run(scenario)


def test_scan_error_does_not_disturb_stability(root: Path) -> None:
    publish(root, "m", 1)
    hidden = root.with_name("elsewhere")

    async def scenario(manager: ModelManager, loader: FakeLoader) -> None:
        watcher = RepositoryWatcher(DirectoryRepository(root), manager, poll_interval_s=0)
        await scan(watcher, manager, initial=True)
        publish(root, "m", 2)
        await scan(watcher, manager)
        root.rename(hidden)
        await scan(watcher, manager)
        hidden.rename(root)
        await scan(watcher, manager)  # same files as the last successful scan
        assert states(manager, "m") == {2: AVAILABLE}

    run(scenario)


def test_removed_model_folder_unloads(root: Path) -> None:
    publish(root, "a", 1)
    publish(root, "b", 1)

    async def scenario(manager: ModelManager, loader: FakeLoader) -> None:
        watcher = RepositoryWatcher(DirectoryRepository(root), manager, poll_interval_s=0)
        await scan(watcher, manager, initial=True)
        (root / "b" / "1" / "model.mock").unlink()
        (root / "b" / "1").rmdir()
        (root / "b").rmdir()
        await scan(watcher, manager)
        assert manager.model_names() == ["a"]
        assert loader.runtime("b", 1).unloaded

    run(scenario)


def test_invalid_config_yaml_through_the_watcher(root: Path) -> None:
    publish(root, "m", 1)

    async def scenario(manager: ModelManager, loader: FakeLoader) -> None:
        watcher = RepositoryWatcher(DirectoryRepository(root), manager, poll_interval_s=0)
        await scan(watcher, manager, initial=True)
        (root / "m" / "config.yaml").write_text("warmup: {enabeld: false}\n", encoding="utf-8")
        publish(root, "m", 2)
        await scan(watcher, manager)
        await scan(watcher, manager)
        assert loader.count("m", 2) == 0
        (status_2, status_1) = manager.status("m", None, None)
        assert status_2.state is FAILED
        assert status_2.error is not None
        assert "warmup.enabeld" in status_2.error
        assert status_1.state is AVAILABLE
        (root / "m" / "config.yaml").write_text("warmup: {enabled: false}\n", encoding="utf-8")
        await scan(watcher, manager)
        assert states(manager, "m") == {2: AVAILABLE}

    run(scenario)


def test_polling_in_the_background(root: Path) -> None:
    publish(root, "m", 1)

    async def scenario(manager: ModelManager, loader: FakeLoader) -> None:
        watcher = RepositoryWatcher(DirectoryRepository(root), manager, poll_interval_s=0.005)
        await scan(watcher, manager, initial=True)
        watcher.start()
        watcher.start()  # a second start does not start a second poller
        publish(root, "m", 2)
        try:
            await wait_until(
                lambda: (
                    manager.models["m"].versions.get(2) is not None
                    and manager.models["m"].versions[2].state is AVAILABLE
                ),
                "the poller to load version 2",
            )
        finally:
            await watcher.stop()
        await watcher.stop()  # stopping twice is harmless
        assert loader.count("m", 2) == 1

    run(scenario)


def test_no_polling_when_interval_is_zero(root: Path) -> None:
    publish(root, "m", 1)

    async def scenario(manager: ModelManager, loader: FakeLoader) -> None:
        watcher = RepositoryWatcher(DirectoryRepository(root), manager, poll_interval_s=0)
        watcher.start()
        assert watcher._task is None
        await watcher.stop()

    run(scenario)


class FlakySource(RepositorySource):
    """Raises an unexpected error on its first ``failures`` scans, then reads ``root``."""

    def __init__(self, root: Path, failures: int) -> None:
        self.inner = DirectoryRepository(root)
        self.failures = failures
        self.scans = 0

    def describe(self) -> str:
        return "flaky repository"

    def scan(self) -> dict[str, ModelSource]:
        self.scans += 1
        if self.scans <= self.failures:
            raise RuntimeError("bug in a scan")
        return self.inner.scan()


def test_polling_survives_an_unexpected_scan_error(
    root: Path, caplog: pytest.LogCaptureFixture
) -> None:
    publish(root, "m", 1)
    source = FlakySource(root, failures=2)

    async def scenario(manager: ModelManager, loader: FakeLoader) -> None:
        watcher = RepositoryWatcher(source, manager, poll_interval_s=0.005)
        watcher.start()
        try:
            await wait_until(lambda: loader.count("m", 1) == 1, "the poller to recover")
        finally:
            await watcher.stop()
        assert source.scans >= 4  # two failures, then two looks at the same files
        failures = [
            r for r in caplog.records if r.getMessage() == "scanning flaky repository failed"
        ]
        assert len(failures) == 2

    run(scenario)


def test_scan_error_from_any_source(caplog: pytest.LogCaptureFixture) -> None:
    class Gone(RepositorySource):
        def describe(self) -> str:
            return "gone"

        def scan(self) -> dict[str, ModelSource]:
            raise ScanError("the model base path /x is not a folder")

    async def scenario(manager: ModelManager, loader: FakeLoader) -> None:
        watcher = RepositoryWatcher(Gone(), manager, poll_interval_s=0)
        await scan(watcher, manager, initial=True)
        assert manager.models == {}

    run(scenario)
    assert [r.getMessage() for r in caplog.records] == [
        "the model base path /x is not a folder; keeping the models loaded now"
    ]
