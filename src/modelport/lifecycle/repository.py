"""Reading a model repository from disk into ``ModelSource`` values.

A repository is ``<root>/<model>/<version>/<files>``; a version folder is named by a positive
integer. ``<root>/<model>/config.yaml`` is optional. Three sources produce the same values: a
repository folder, a single model (TF Serving's ``--model_name`` + ``--model_base_path``), and a
TF Serving ``--model_config_file`` (see ``tfconfig``). Scans are plain blocking file-system calls;
the watcher runs them off the event loop.
"""

from __future__ import annotations

import logging
import os
import re
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from modelport.model_config import ModelConfig, load_model_config

__all__ = [
    "CONFIG_FILENAME",
    "DirectoryRepository",
    "ModelSource",
    "OnceLog",
    "RepositorySource",
    "ScanError",
    "SingleModelRepository",
    "VersionFolder",
    "scan_model",
    "valid_model_name",
]

log = logging.getLogger(__name__)

CONFIG_FILENAME = "config.yaml"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_VERSION = re.compile(r"[0-9]{1,18}")


#: (path relative to the version folder, size in bytes, modification time in ns) per file.
Fingerprint = tuple[tuple[str, int, int], ...]


def valid_model_name(name: str) -> bool:
    """Model names and labels: 1-128 letters, digits, ``.``, ``_`` and ``-``, starting with a
    letter or digit, without ``..``."""
    return _NAME.fullmatch(name) is not None and ".." not in name


NAME_RULE = "letters, digits, '.', '_' and '-', starting with a letter or digit"


@dataclass(frozen=True, slots=True)
class VersionFolder:
    """One ``<model>/<version>/`` folder as seen by one scan."""

    version: int
    path: Path
    fingerprint: Fingerprint

    @property
    def empty(self) -> bool:
        return not self.fingerprint


@dataclass(frozen=True, slots=True)
class ModelSource:
    """One model as seen by one scan: its folder, its configuration and its version folders.

    ``config`` is None when ``config.yaml`` is invalid; ``config_error`` then says why.
    """

    name: str
    base_path: Path
    config: ModelConfig | None
    config_error: str | None = None
    versions: Mapping[int, VersionFolder] = field(default_factory=dict)

    @property
    def config_fingerprint(self) -> str:
        return (
            self.config.fingerprint() if self.config is not None else f"error:{self.config_error}"
        )


class ScanError(Exception):
    """The repository could not be read this time; the previous view stays in force."""


class OnceLog:
    """Logs a problem once, not on every poll.

    Each message belongs to a subject (by default the message itself); it is logged when the
    subject's message changes. ``clear(subject)`` records that the problem went away, so it is
    logged again if it comes back.
    """

    def __init__(self) -> None:
        self._last: dict[str, str] = {}

    def __call__(self, level: int, message: str, subject: str | None = None) -> None:
        key = subject or message
        if self._last.get(key) != message:
            self._last[key] = message
            log.log(level, "%s", message)

    def clear(self, subject: str) -> None:
        self._last.pop(subject, None)


class RepositorySource(ABC):
    """Something that can be scanned into model sources."""

    @abstractmethod
    def scan(self) -> dict[str, ModelSource]:
        """Read the current state; raise ``ScanError`` if it cannot be read at all."""

    @abstractmethod
    def describe(self) -> str:
        """A short description for log lines."""


class DirectoryRepository(RepositorySource):
    """A folder whose sub-folders are models."""

    def __init__(
        self, root: Path, once: OnceLog | None = None, defaults: Mapping[str, object] | None = None
    ) -> None:
        self.root = root
        self._once = once or OnceLog()
        self._defaults = defaults

    def describe(self) -> str:
        return f"model repository {self.root}"

    def scan(self) -> dict[str, ModelSource]:
        try:
            entries = sorted(os.scandir(self.root), key=lambda e: e.name)
        except OSError as exc:
            raise ScanError(f"cannot read the model repository {self.root}: {exc}") from exc
        models: dict[str, ModelSource] = {}
        for entry in entries:
            if not entry.is_dir():
                continue
            if not valid_model_name(entry.name):
                self._once(
                    logging.WARNING, f"ignoring folder {entry.path!r}: model names use {NAME_RULE}"
                )

                continue
            models[entry.name] = scan_model(
                entry.name, Path(entry.path), self._once, defaults=self._defaults
            )
        return models


class SingleModelRepository(RepositorySource):
    """One model at ``base_path`` served under ``name`` (TF Serving's single-model flags)."""

    def __init__(
        self,
        name: str,
        base_path: Path,
        once: OnceLog | None = None,
        defaults: Mapping[str, object] | None = None,
    ) -> None:
        self.name = name
        self.base_path = base_path
        self._once = once or OnceLog()
        self._defaults = defaults

    def describe(self) -> str:
        return f"model {self.name} at {self.base_path}"

    def scan(self) -> dict[str, ModelSource]:
        if not self.base_path.is_dir():
            raise ScanError(f"the model base path {self.base_path} is not a folder")
        return {
            self.name: scan_model(self.name, self.base_path, self._once, defaults=self._defaults)
        }


def scan_model(
    name: str,
    base_path: Path,
    once: OnceLog,
    config_override: dict[str, object] | None = None,
    defaults: Mapping[str, object] | None = None,
) -> ModelSource:
    """Read one model folder: ``config.yaml`` and its version folders.

    ``config_override`` holds already-validated values (for example the version policy of a TF
    Serving config file) that replace those of ``config.yaml``; ``defaults`` (for example TF
    Serving's batching parameters) apply where ``config.yaml`` says nothing.
    """
    config, error = _read_config(base_path, config_override, defaults)
    if error is not None:
        once(logging.ERROR, f"model {name}: {error}", subject=f"{name}:config")
    else:
        once.clear(f"{name}:config")
    try:
        entries = sorted(os.scandir(base_path), key=lambda e: e.name)
    except OSError as exc:
        once(logging.ERROR, f"model {name}: cannot read {base_path}: {exc}", f"{name}:folder")
        return ModelSource(name, base_path, config, error)
    once.clear(f"{name}:folder")
    versions: dict[int, VersionFolder] = {}
    for entry in entries:
        if not entry.is_dir():
            continue
        if _VERSION.fullmatch(entry.name) and int(entry.name) > 0:
            version = int(entry.name)
            if version in versions:
                once(
                    logging.WARNING,
                    f"model {name}: folders {versions[version].path.name} and {entry.name} are "
                    "the same version number; using the first",
                )
                continue
            versions[version] = VersionFolder(version, Path(entry.path), fingerprint(entry.path))
        else:
            once(
                logging.INFO,
                f"model {name}: ignoring folder {entry.name!r}; version folders are named by "
                "positive integers",
            )
    return ModelSource(name, base_path, config, error, versions)


def _read_config(
    base_path: Path,
    override: dict[str, object] | None,
    defaults: Mapping[str, object] | None,
) -> tuple[ModelConfig | None, str | None]:
    path = base_path / CONFIG_FILENAME
    try:
        config = load_model_config(path) if path.is_file() else ModelConfig()
        if defaults:
            config = config.with_defaults(defaults)
        if override:
            config = config.model_copy(update=override)
    except ValueError as exc:
        return None, str(exc)
    return config, None


def fingerprint(folder: str | Path) -> Fingerprint:
    """Every file under ``folder`` with its size and modification time, sorted by path."""
    found: list[tuple[str, int, int]] = []
    for dirpath, _dirs, files in os.walk(folder):
        for filename in files:
            full = os.path.join(dirpath, filename)
            try:
                st = os.stat(full)
            except OSError:  # removed while scanning: the next scan sees the new state
                continue
            found.append((os.path.relpath(full, folder), st.st_size, st.st_mtime_ns))
    return tuple(sorted(found))
