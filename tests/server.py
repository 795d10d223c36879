"""Running a real ``modelport serve`` process for a test, on free loopback ports."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import httpx


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def with_grpc_port(args: Sequence[str], port: int | None = None) -> list[str]:
    """``serve`` arguments with a free gRPC port, unless they name one (tests run in parallel)."""
    if "--grpc-port" in args or "--port" in args:
        return list(args)
    return [*args, "--grpc-port", str(port or free_port())]


class ServerProcess:
    """``python -m modelport serve ARGS`` with its log in a file; stop() returns the exit code."""

    def __init__(
        self,
        args: Sequence[str],
        log_path: Path,
        env: dict[str, str] | None = None,
        port_flag: str = "--http-port",
        python: str | Path | None = None,
    ) -> None:
        self.port = free_port()
        self.grpc_port = free_port()
        self.log_path = log_path
        command = [
            str(python or sys.executable),  # another interpreter, e.g. .venv-tf's
            "-m",
            "modelport",
            "serve",
            port_flag,
            str(self.port),
            *with_grpc_port(args, self.grpc_port),
        ]
        full_env = {**os.environ, **(env or {})}
        with log_path.open("wb") as log:  # the child keeps its own copy of the descriptor
            self.proc = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, env=full_env
            )
        self.url = f"http://127.0.0.1:{self.port}"
        self.grpc_target = f"127.0.0.1:{self.grpc_port}"

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def wait_live(self, timeout: float = 60) -> None:
        self._wait("/v2/health/live", timeout)

    def wait_ready(self, timeout: float = 60) -> None:
        self._wait("/v2/health/ready", timeout)

    def _wait(self, path: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"modelport exited with {self.proc.returncode}:\n{self.log()}")
            try:
                if httpx.get(self.url + path, timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        raise AssertionError(f"modelport did not answer 200 on {path}:\n{self.log()}")

    def wait_log(self, text: str, timeout: float = 30) -> None:
        """Wait until the log contains ``text``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.log():
                return
            time.sleep(0.05)
        raise AssertionError(f"{text!r} never appeared in the log:\n{self.log()}")

    def wait_exit(self, timeout: float = 30) -> int:
        return self.proc.wait(timeout)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.wait_exit(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise
