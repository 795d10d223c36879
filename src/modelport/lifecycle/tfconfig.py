"""TF Serving's ``--model_config_file``: a text-format ``model_config_list``, read unchanged.

Each ``config { ... }`` entry names a model, its ``base_path`` (relative paths are taken from the
config file's folder), its ``model_platform`` (accepted, informational: the files in the version
folder decide the engine), ``model_version_policy`` and ``version_labels``. These override the
same settings of a ``config.yaml`` in the base path; everything else still comes from there.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from google.protobuf import text_format

from modelport._pb.tfserving import model_server_config_pb2 as pb
from modelport.lifecycle.repository import (
    NAME_RULE,
    ModelSource,
    OnceLog,
    RepositorySource,
    ScanError,
    scan_model,
    valid_model_name,
)
from modelport.model_config import VersionPolicy

__all__ = ["ConfigEntry", "ConfigFileRepository", "parse_model_config_text"]


@dataclass(frozen=True, slots=True)
class ConfigEntry:
    """One model of a ``model_config_list``."""

    name: str
    base_path: Path
    platform: str
    policy: VersionPolicy | None
    labels: dict[str, int] | None
    has_logging_config: bool = False

    def overrides(self) -> dict[str, object]:
        """The ``ModelConfig`` values this entry sets."""
        values: dict[str, object] = {}
        if self.platform:
            values["platform"] = self.platform
        if self.policy is not None:
            values["version_policy"] = self.policy
        if self.labels is not None:
            values["labels"] = self.labels
        return values


def parse_model_config_text(text: str, relative_to: Path) -> list[ConfigEntry]:
    """Parse a TF Serving model config file; raise ValueError saying what is wrong and where."""
    message = pb.ModelServerConfig()
    try:
        text_format.Parse(text, message)
    except text_format.ParseError as exc:
        raise ValueError(f"not a valid TF Serving model config: {exc}") from exc
    if message.WhichOneof("config") == "custom_model_config":
        raise ValueError("custom_model_config is not supported; list models in model_config_list")
    entries: list[ConfigEntry] = []
    seen: set[str] = set()
    for index, config in enumerate(message.model_config_list.config):
        entry = _entry(config, index, relative_to)
        if entry.name in seen:
            raise ValueError(f"model {entry.name!r} appears twice in model_config_list")
        seen.add(entry.name)
        entries.append(entry)
    return entries


def _entry(config: pb.ModelConfig, index: int, relative_to: Path) -> ConfigEntry:
    where = f"config #{index + 1}"
    if not valid_model_name(config.name):
        raise ValueError(f"{where}: name {config.name!r} is not a valid model name ({NAME_RULE})")

    if not config.base_path:
        raise ValueError(f"{where} ({config.name}): base_path is required")
    base_path = Path(config.base_path)
    if not base_path.is_absolute():
        base_path = relative_to / base_path
    labels = dict(config.version_labels) if config.version_labels else None
    for label, version in (labels or {}).items():
        if not valid_model_name(label) or version < 1:
            raise ValueError(
                f"{where} ({config.name}): version label {label!r} -> {version} is invalid; "
                f"labels use {NAME_RULE} and point at a positive version"
            )

    return ConfigEntry(
        name=config.name,
        base_path=base_path,
        platform=config.model_platform,
        policy=_policy(config, where),
        labels=labels,
        has_logging_config=config.HasField("logging_config"),
    )


def _policy(config: pb.ModelConfig, where: str) -> VersionPolicy | None:
    if not config.HasField("model_version_policy"):
        return None
    policy = config.model_version_policy
    choice = policy.WhichOneof("policy_choice")
    if choice == "all":
        return VersionPolicy(kind="all")
    if choice == "specific":
        versions = tuple(policy.specific.versions)
        if not versions or min(versions) < 1:
            raise ValueError(f"{where} ({config.name}): specific needs positive version numbers")
        return VersionPolicy(kind="specific", versions=versions)
    if choice == "latest":
        return VersionPolicy(kind="latest", num_versions=policy.latest.num_versions or 1)
    return VersionPolicy()


class ConfigFileRepository(RepositorySource):
    """The models a TF Serving config file lists, re-read every ``poll_wait_s`` (0: read once)."""

    def __init__(
        self,
        path: Path,
        poll_wait_s: float = 0.0,
        once: OnceLog | None = None,
        defaults: Mapping[str, object] | None = None,
    ) -> None:
        self.path = path
        self.poll_wait_s = poll_wait_s
        self._once = once or OnceLog()
        self._defaults = defaults
        self._entries = self._read()
        self._read_at = time.monotonic()

    def describe(self) -> str:
        return f"model config file {self.path}"

    def _read(self) -> list[ConfigEntry]:
        try:
            text = self.path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ValueError(f"cannot read the model config file {self.path}: {exc}") from exc
        entries = parse_model_config_text(text, self.path.parent)
        self._warn_unused(entries, self.path.name)
        return entries

    def _warn_unused(self, entries: list[ConfigEntry], where: str) -> None:
        for entry in entries:
            if entry.has_logging_config:
                self._once(
                    logging.WARNING,
                    f"model {entry.name}: logging_config in {where} is not used by modelport and "
                    "is ignored",
                )

    def replace(self, text: str) -> list[ConfigEntry]:
        """Serve the models of ``text`` (a model config, relative paths taken from the file's
        folder) instead of the file's; raise ValueError if it is invalid.

        The file is not rewritten: with ``poll_wait_s`` set, its content is served again once it
        is next re-read, as in TF Serving.
        """
        entries = parse_model_config_text(text, self.path.parent)
        self._warn_unused(entries, "the reloaded model config")
        self._entries = entries
        self._read_at = time.monotonic()
        return entries

    def _maybe_reload(self) -> None:
        if self.poll_wait_s <= 0 or time.monotonic() - self._read_at < self.poll_wait_s:
            return
        self._read_at = time.monotonic()
        try:
            self._entries = self._read()
        except ValueError as exc:
            self._once(logging.ERROR, f"{exc}; keeping the models of its last valid version")

    def scan(self) -> dict[str, ModelSource]:
        self._maybe_reload()
        if not self._entries and not self.path.exists():
            raise ScanError(f"the model config file {self.path} is gone")
        return {
            entry.name: scan_model(
                entry.name, entry.base_path, self._once, entry.overrides(), self._defaults
            )
            for entry in self._entries
        }
