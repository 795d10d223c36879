"""Why ``modelport bench`` stopped before it could measure, and which exit code says so.

BenchError            exit code 1 unless a subclass says otherwise
├── UsageError        exit code 2: the command line is wrong (options, model name, inputs)
└── ServerError       exit code 1: the server is unreachable, not ready, or refused a request
"""

from __future__ import annotations

__all__ = ["BenchError", "ServerError", "UsageError"]


class BenchError(Exception):
    """A problem that stops the benchmark; ``exit_code`` is what the command exits with."""

    exit_code = 1


class UsageError(BenchError):
    """The command line asks for something impossible: fix the options and run again."""

    exit_code = 2


class ServerError(BenchError):
    """The server cannot be measured: it is unreachable, not ready, or refused the request."""

    exit_code = 1
