"""Scanning model repositories on disk into ``ModelSource`` values."""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

import pytest

from modelport.lifecycle.repository import (
    DirectoryRepository,
    OnceLog,
    ScanError,
    SingleModelRepository,
    VersionFolder,
    fingerprint,
    scan_model,
    valid_model_name,
)
from modelport.model_config import ModelConfig, VersionPolicy

LOGGER = "modelport.lifecycle.repository"


def put(path: Path, content: bytes = b"model") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return path


def messages(caplog: pytest.LogCaptureFixture, needle: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if needle in r.getMessage()]


@pytest.fixture
def root(tmp_path: Path) -> Path:
    root = tmp_path / "models"
    root.mkdir()
    return root


# ---- names ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["mnist", "a", "A1", "my-model_v2.onnx", "1", "a" * 128, "a.b"])
def test_valid_model_names(name: str) -> None:
    assert valid_model_name(name)


@pytest.mark.parametrize(
    "name",
    ["", ".hidden", "_private", "-dash", "has space", "a/b", "a..b", "..", "a" * 129, "é", "\na"],
)
def test_invalid_model_names(name: str) -> None:
    assert not valid_model_name(name)


def test_name_with_trailing_newline_is_invalid() -> None:
    assert not valid_model_name("mnist\n")


def test_folder_with_trailing_newline_is_not_a_model(root: Path) -> None:
    put(root / "mnist\n" / "1" / "model.onnx")
    assert DirectoryRepository(root).scan() == {}


# ---- DirectoryRepository ----------------------------------------------------------------------


def test_scan_finds_models_and_versions(root: Path) -> None:
    put(root / "mnist" / "1" / "model.onnx")
    put(root / "mnist" / "2" / "model.onnx")
    put(root / "tabular" / "3" / "model.onnx")
    sources = DirectoryRepository(root).scan()
    assert sorted(sources) == ["mnist", "tabular"]
    mnist = sources["mnist"]
    assert mnist.name == "mnist"
    assert mnist.base_path == root / "mnist"
    assert mnist.config == ModelConfig()
    assert mnist.config_error is None
    assert sorted(mnist.versions) == [1, 2]
    one = mnist.versions[1]
    assert isinstance(one, VersionFolder)
    assert one.version == 1
    assert one.path == root / "mnist" / "1"
    assert [name for name, _size, _mtime in one.fingerprint] == ["model.onnx"]
    assert one.fingerprint[0][1] == len(b"model")
    assert not one.empty
    assert sorted(sources["tabular"].versions) == [3]


def test_empty_repository_and_model_without_versions(root: Path) -> None:
    assert DirectoryRepository(root).scan() == {}
    (root / "empty").mkdir()
    sources = DirectoryRepository(root).scan()
    assert sources["empty"].versions == {}
    assert sources["empty"].config == ModelConfig()


def test_empty_version_folder_is_reported_empty(root: Path) -> None:
    (root / "m" / "1").mkdir(parents=True)
    folder = DirectoryRepository(root).scan()["m"].versions[1]
    assert folder.empty
    assert folder.fingerprint == ()


def test_files_at_root_are_ignored_silently(root: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    put(root / "README.md", b"hello")
    put(root / "config.yaml", b"version_policy: all\n")
    put(root / "m" / "1" / "model.onnx")
    assert list(DirectoryRepository(root).scan()) == ["m"]
    assert caplog.records == []


def test_files_in_model_folder_are_not_versions(root: Path) -> None:
    put(root / "m" / "notes.txt")
    put(root / "m" / "2")  # a file named like a version
    put(root / "m" / "1" / "model.onnx")
    assert list(DirectoryRepository(root).scan()["m"].versions) == [1]


@pytest.mark.parametrize("name", ["0", "00", "v1", "1.5", "-1", "1a", ".incoming-3", "latest"])
def test_non_integer_version_folders_are_ignored(root: Path, name: str) -> None:
    put(root / "m" / name / "model.onnx")
    put(root / "m" / "7" / "model.onnx")
    assert list(DirectoryRepository(root).scan()["m"].versions) == [7]


def test_ignored_version_folder_is_logged_once(
    root: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    put(root / "m" / "v1" / "model.onnx")
    repository = DirectoryRepository(root)
    repository.scan()
    repository.scan()
    found = messages(caplog, "'v1'")
    assert found == [
        "model m: ignoring folder 'v1'; version folders are named by positive integers"
    ]


@pytest.mark.parametrize("name", [".hidden", "_private", "bad name", "a..b", "-x"])
def test_invalid_model_folders_are_ignored_and_logged_once(
    root: Path, caplog: pytest.LogCaptureFixture, name: str
) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    put(root / name / "1" / "model.onnx")
    put(root / "good" / "1" / "model.onnx")
    repository = DirectoryRepository(root)
    assert list(repository.scan()) == ["good"]
    assert list(repository.scan()) == ["good"]
    found = [r for r in caplog.records if name in r.getMessage()]
    assert len(found) == 1
    assert found[0].levelno == logging.WARNING
    assert found[0].getMessage().startswith(f"ignoring folder {str(root / name)!r}: model names")


def test_shared_once_log_spans_repositories(root: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    put(root / "_x" / "1" / "model.onnx")
    once = OnceLog()
    DirectoryRepository(root, once).scan()
    DirectoryRepository(root, once).scan()
    DirectoryRepository(root).scan()  # a fresh log says it again
    assert len(messages(caplog, "_x")) == 2


def test_duplicate_version_numbers_use_the_first(
    root: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    put(root / "m" / "01" / "model.onnx", b"first")
    put(root / "m" / "1" / "model.onnx", b"second!")
    repository = DirectoryRepository(root)
    versions = repository.scan()["m"].versions
    repository.scan()
    assert list(versions) == [1]
    assert versions[1].path.name == "01"
    warned = messages(caplog, "same version number")
    assert warned == ["model m: folders 01 and 1 are the same version number; using the first"]


def test_versions_are_numbers_not_names(root: Path) -> None:
    for version in ("2", "10", "9"):
        put(root / "m" / version / "model.onnx")
    assert sorted(DirectoryRepository(root).scan()["m"].versions) == [2, 9, 10]


def test_unicode_digit_folder_is_ignored_not_fatal(root: Path) -> None:
    put(root / "m" / "1" / "model.onnx")
    put(root / "m" / "\u00b2" / "model.onnx")  # SUPERSCRIPT TWO: isdigit() but not int()
    assert list(DirectoryRepository(root).scan()["m"].versions) == [1]


def test_missing_root_raises_scan_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(ScanError, match=re.escape(f"cannot read the model repository {missing}")):
        DirectoryRepository(missing).scan()


def test_root_that_is_a_file_raises_scan_error(tmp_path: Path) -> None:
    path = put(tmp_path / "file")
    with pytest.raises(ScanError, match="cannot read the model repository"):
        DirectoryRepository(path).scan()


def test_describe(root: Path) -> None:
    assert DirectoryRepository(root).describe() == f"model repository {root}"


# ---- fingerprints -----------------------------------------------------------------------------


def version_print(root: Path) -> tuple[tuple[str, int, int], ...]:
    return DirectoryRepository(root).scan()["m"].versions[1].fingerprint


def test_fingerprint_unchanged_when_nothing_changes(root: Path) -> None:
    put(root / "m" / "1" / "model.onnx")
    assert version_print(root) == version_print(root)


def test_fingerprint_changes_with_size(root: Path) -> None:
    path = put(root / "m" / "1" / "model.onnx", b"12345")
    stat = path.stat()
    before = version_print(root)
    path.write_bytes(b"123456")
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # same mtime: only the size differs
    after = version_print(root)
    assert before != after
    assert after[0][1] == 6


def test_fingerprint_changes_with_mtime(root: Path) -> None:
    path = put(root / "m" / "1" / "model.onnx")
    os.utime(path, ns=(1_000_000_000, 1_000_000_000))
    before = version_print(root)
    os.utime(path, ns=(1_000_000_000, 2_000_000_000))
    after = version_print(root)
    assert before != after
    assert (before[0][2], after[0][2]) == (1_000_000_000, 2_000_000_000)


def test_fingerprint_changes_when_a_file_appears(root: Path) -> None:
    put(root / "m" / "1" / "model.onnx")
    before = version_print(root)
    put(root / "m" / "1" / "extra.bin")
    assert version_print(root) != before


def test_fingerprint_covers_nested_files_sorted(tmp_path: Path) -> None:
    put(tmp_path / "v" / "variables" / "data", b"abc")
    put(tmp_path / "v" / "b.txt", b"x")
    put(tmp_path / "v" / "a.txt", b"xy")
    found = fingerprint(tmp_path / "v")
    assert [(name, size) for name, size, _ in found] == [
        ("a.txt", 2),
        ("b.txt", 1),
        (os.path.join("variables", "data"), 3),
    ]


def test_fingerprint_of_other_versions_unaffected(root: Path) -> None:
    put(root / "m" / "1" / "model.onnx")
    put(root / "m" / "2" / "model.onnx")
    repository = DirectoryRepository(root)
    before = repository.scan()["m"].versions
    put(root / "m" / "2" / "model.onnx", b"bigger model")
    after = repository.scan()["m"].versions
    assert before[1].fingerprint == after[1].fingerprint
    assert before[2].fingerprint != after[2].fingerprint


# ---- config.yaml ------------------------------------------------------------------------------


def test_valid_config_is_read(root: Path) -> None:
    put(root / "m" / "config.yaml", b"version_policy: all\nlabels: {stable: 1}\n")
    put(root / "m" / "1" / "model.onnx")
    source = DirectoryRepository(root).scan()["m"]
    assert source.config is not None
    assert source.config.version_policy == VersionPolicy(kind="all")
    assert source.config.labels == {"stable": 1}
    assert source.config_error is None
    assert source.config_fingerprint == source.config.fingerprint()


def test_invalid_config_gives_none_with_error(root: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    put(root / "m" / "config.yaml", b"versoin_policy: all\n")
    put(root / "m" / "1" / "model.onnx")
    repository = DirectoryRepository(root)
    source = repository.scan()["m"]
    repository.scan()
    assert source.config is None
    assert source.config_error is not None
    assert source.config_error.startswith("invalid config.yaml: versoin_policy")
    assert source.config_fingerprint == f"error:{source.config_error}"
    assert sorted(source.versions) == [1]  # versions are still reported
    logged = [r for r in caplog.records if "versoin_policy" in r.getMessage()]
    assert len(logged) == 1
    assert logged[0].levelno == logging.ERROR
    assert logged[0].getMessage().startswith("model m: invalid config.yaml")


def test_unparsable_config_gives_none_with_error(root: Path) -> None:
    put(root / "m" / "config.yaml", b"labels: [\n")
    source = DirectoryRepository(root).scan()["m"]
    assert source.config is None
    assert source.config_error is not None
    assert source.config_error.startswith("cannot read config.yaml")


def test_config_error_fingerprint_differs_by_error(root: Path) -> None:
    put(root / "m" / "config.yaml", b"versoin_policy: all\n")
    first = DirectoryRepository(root).scan()["m"].config_fingerprint
    put(root / "m" / "config.yaml", b"labls: {}\n")
    second = DirectoryRepository(root).scan()["m"].config_fingerprint
    assert first != second


def test_config_override_replaces_config_yaml_values(root: Path) -> None:
    put(root / "m" / "config.yaml", b"version_policy: all\nlabels: {a: 1}\nmax_batch_size: 8\n")
    override = {"version_policy": VersionPolicy(kind="latest", num_versions=2), "labels": {"b": 2}}
    source = scan_model("m", root / "m", OnceLog(), override)
    assert source.config is not None
    assert source.config.version_policy == VersionPolicy(kind="latest", num_versions=2)
    assert source.config.labels == {"b": 2}
    assert source.config.max_batch_size == 8


def test_config_override_without_config_yaml(root: Path) -> None:
    (root / "m").mkdir()
    source = scan_model("m", root / "m", OnceLog(), {"labels": {"b": 2}})
    assert source.config == ModelConfig(labels={"b": 2})


def test_scan_model_on_missing_folder_reports_no_versions(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    source = scan_model("m", tmp_path / "gone", OnceLog())
    assert source.versions == {}
    assert source.config == ModelConfig()
    assert messages(caplog, "model m: cannot read")


# ---- SingleModelRepository --------------------------------------------------------------------


def test_single_model_repository(tmp_path: Path) -> None:
    base = tmp_path / "base"
    put(base / "1" / "model.onnx")
    put(base / "3" / "model.onnx")
    put(base / "config.yaml", b"version_policy: all\n")
    repository = SingleModelRepository("mine", base)
    sources = repository.scan()
    assert list(sources) == ["mine"]
    source = sources["mine"]
    assert source.name == "mine"
    assert source.base_path == base
    assert sorted(source.versions) == [1, 3]
    assert source.config is not None
    assert source.config.version_policy.kind == "all"
    assert repository.describe() == f"model mine at {base}"


def test_single_model_repository_missing_base_path(tmp_path: Path) -> None:
    with pytest.raises(ScanError, match="is not a folder"):
        SingleModelRepository("m", tmp_path / "nope").scan()
    put(tmp_path / "file")
    with pytest.raises(ScanError, match="is not a folder"):
        SingleModelRepository("m", tmp_path / "file").scan()
