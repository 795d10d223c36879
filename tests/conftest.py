"""Shared fixtures: example repositories built in temporary folders, and real server processes."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

from tests.models import build_example_repository
from tests.server import ServerProcess

StartServer = Callable[..., ServerProcess]


@pytest.fixture(scope="session")
def example_repository_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example repository, built once per test session; copy it before changing it."""
    return build_example_repository(tmp_path_factory.mktemp("examples") / "models")


@pytest.fixture
def example_repository(example_repository_template: Path, tmp_path: Path) -> Path:
    """A private, writable copy of the example repository."""
    target = tmp_path / "models"
    shutil.copytree(example_repository_template, target)
    return target


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[StartServer]:
    """Start ``modelport serve`` processes; every one still running is stopped afterwards."""
    started: list[ServerProcess] = []

    def start(
        *args: str,
        env: dict[str, str] | None = None,
        ready: bool = True,
        port_flag: str = "--http-port",
    ) -> ServerProcess:
        log = tmp_path / f"server-{len(started)}.log"
        server = ServerProcess(list(args), log, env=env, port_flag=port_flag)
        started.append(server)
        if ready:
            server.wait_ready()
        return server

    yield start
    for server in started:
        if server.proc.poll() is None:
            server.stop()


@pytest.fixture(scope="module")
def examples_server(
    tmp_path_factory: pytest.TempPathFactory, example_repository_template: Path
) -> Iterator[ServerProcess]:
    """One server on the example repository, shared by a test module that does not change it."""
    folder = tmp_path_factory.mktemp("server")
    server = ServerProcess(
        ["--model-repository", str(example_repository_template)], folder / "server.log"
    )
    server.wait_ready()
    yield server
    server.stop()


def repository_args(repository: Path, *extra: str) -> Sequence[str]:
    return ["--model-repository", str(repository), *extra]
