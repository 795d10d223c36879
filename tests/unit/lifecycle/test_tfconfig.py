"""TF Serving's ``--model_config_file``: parsing, and re-reading it on poll."""

from __future__ import annotations

import logging
import re
from pathlib import Path
from types import SimpleNamespace

import pytest

from modelport.lifecycle import tfconfig
from modelport.lifecycle.repository import ScanError
from modelport.lifecycle.tfconfig import ConfigEntry, ConfigFileRepository, parse_model_config_text
from modelport.model_config import VersionPolicy

LOGGERS = ("modelport.lifecycle.tfconfig", "modelport.lifecycle.repository")

DOCS_EXAMPLE = """
model_config_list {
  config {
    name: "mnist"
    base_path: "/models/mnist"
    model_platform: "tensorflow"
    model_version_policy {
      specific {
        versions: 2
        versions: 3
      }
    }
  }
}
"""


def parse(text: str, relative_to: Path = Path("/configs")) -> list[ConfigEntry]:
    return parse_model_config_text(text, relative_to)


def one(body: str) -> str:
    return f"model_config_list {{ config {{ {body} }} }}"


# ---- parsing ----------------------------------------------------------------------------------


def test_tf_serving_docs_example() -> None:
    (entry,) = parse(DOCS_EXAMPLE)
    assert entry.name == "mnist"
    assert entry.base_path == Path("/models/mnist")
    assert entry.platform == "tensorflow"
    assert entry.policy == VersionPolicy(kind="specific", versions=(2, 3))
    assert entry.labels is None
    assert not entry.has_logging_config
    assert entry.overrides() == {
        "platform": "tensorflow",
        "version_policy": VersionPolicy(kind="specific", versions=(2, 3)),
    }


def test_single_quotes_and_colon_before_braces() -> None:
    text = """
    model_config_list: {
      config: {
        name: 'mnist',
        base_path: '/models/mnist',
        model_platform: 'tensorflow',
        model_version_policy: { specific: { versions: [2, 3] } }
      }
    }
    """
    (entry,) = parse(text)
    assert (entry.name, entry.base_path) == ("mnist", Path("/models/mnist"))
    assert entry.policy == VersionPolicy(kind="specific", versions=(2, 3))


def test_several_models_keep_file_order() -> None:
    text = """
    model_config_list {
      config { name: "b" base_path: "/m/b" }
      config { name: "a" base_path: "/m/a" }
    }
    """
    assert [e.name for e in parse(text)] == ["b", "a"]


def test_empty_file_lists_no_models() -> None:
    assert parse("") == []
    assert parse("model_config_list {}") == []
    assert parse("# just a comment\n") == []


def test_version_labels() -> None:
    text = one(
        'name: "m" base_path: "/m" '
        'version_labels { key: "stable" value: 1 } version_labels { key: "canary" value: 2 }'
    )
    (entry,) = parse(text)
    assert entry.labels == {"stable": 1, "canary": 2}
    assert entry.overrides() == {"labels": {"stable": 1, "canary": 2}}


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        ("latest { num_versions: 2 }", VersionPolicy(kind="latest", num_versions=2)),
        ("latest { }", VersionPolicy(kind="latest", num_versions=1)),
        ("latest { num_versions: 0 }", VersionPolicy(kind="latest", num_versions=1)),
        ("all { }", VersionPolicy(kind="all")),
        ("all: {}", VersionPolicy(kind="all")),
        ("specific { versions: 5 }", VersionPolicy(kind="specific", versions=(5,))),
        ("", VersionPolicy()),  # a policy with no choice is TF Serving's default
    ],
)
def test_policies(policy: str, expected: VersionPolicy) -> None:
    (entry,) = parse(one(f'name: "m" base_path: "/m" model_version_policy {{ {policy} }}'))
    assert entry.policy == expected


def test_no_policy_and_no_platform_override_nothing() -> None:
    (entry,) = parse(one('name: "m" base_path: "/m"'))
    assert entry.policy is None
    assert entry.labels is None
    assert entry.platform == ""
    assert entry.overrides() == {}


def test_relative_base_path_is_taken_from_the_config_folder(tmp_path: Path) -> None:
    (entry,) = parse(one('name: "m" base_path: "models/m"'), tmp_path)
    assert entry.base_path == tmp_path / "models" / "m"
    (entry,) = parse(one('name: "m" base_path: "/abs/m"'), tmp_path)
    assert entry.base_path == Path("/abs/m")


def test_logging_config_is_noted() -> None:
    text = one('name: "m" base_path: "/m" logging_config { sampling_config { sampling_rate: 1 } }')
    (entry,) = parse(text)
    assert entry.has_logging_config


def test_model_type_is_accepted() -> None:
    (entry,) = parse(one('name: "m" base_path: "/m" model_type: TENSORFLOW'))
    assert entry.name == "m"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            'model_config_list { config { name: "a" base_path: "/a" } '
            'config { name: "a" base_path: "/b" } }',
            "model 'a' appears twice in model_config_list",
        ),
        (one('name: "../etc" base_path: "/a"'), "config #1: name '../etc' is not a valid model"),
        (one('name: "has space" base_path: "/a"'), "name 'has space' is not a valid model name"),
        (one('base_path: "/a"'), "config #1: name '' is not a valid model name"),
        (one('name: "a"'), "config #1 (a): base_path is required"),
        (
            'model_config_list { config { name: "ok" base_path: "/ok" } config { name: "b" } }',
            "config #2 (b): base_path is required",
        ),
        (
            'custom_model_config { type_url: "type.googleapis.com/x.Y" value: "" }',
            "custom_model_config is not supported; list models in model_config_list",
        ),
        (one('name: "a" base_path: "/a"')[:-2], "not a valid TF Serving model config"),
        (one('name: "a" base_path: "/a" bogus_field: 1'), "bogus_field"),
        ('model_config_list { config { name: "a" base_path: "/a" }', "not a valid TF Serving"),
        (
            one('name: "a" base_path: "/a" model_version_policy { specific { } }'),
            "config #1 (a): specific needs positive version numbers",
        ),
        (
            one('name: "a" base_path: "/a" model_version_policy { specific { versions: 0 } }'),
            "specific needs positive version numbers",
        ),
        (
            one('name: "a" base_path: "/a" version_labels { key: "bad label" value: 1 }'),
            "config #1 (a): version label 'bad label' -> 1 is invalid",
        ),
        (
            one('name: "a" base_path: "/a" version_labels { key: "ok" value: 0 }'),
            "version label 'ok' -> 0 is invalid",
        ),
        (
            one('name: "a" base_path: "/a" version_labels { key: "" value: 1 }'),
            "version label '' -> 1 is invalid",
        ),
    ],
)
def test_errors_say_what_and_where(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        parse(text)


def test_syntax_error_names_line_and_column() -> None:
    with pytest.raises(ValueError, match=r"^not a valid TF Serving model config: 2:"):
        parse('model_config_list {\n  config { name "a" }\n}')


# ---- ConfigFileRepository ---------------------------------------------------------------------


class Clock:
    """Stands in for the ``time`` module of ``tfconfig``."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(tfconfig, "time", SimpleNamespace(monotonic=fake.monotonic))
    return fake


def model_folder(root: Path, name: str, *versions: int) -> Path:
    base = root / name
    for version in versions:
        (base / str(version)).mkdir(parents=True, exist_ok=True)
        (base / str(version) / "model.onnx").write_bytes(b"onnx")
    base.mkdir(parents=True, exist_ok=True)
    return base


def write(path: Path, *entries: str) -> Path:
    configs = " ".join(f"config {{ {e} }}" for e in entries)
    path.write_text(f"model_config_list {{ {configs} }}", encoding="utf-8")
    return path


def test_repository_scans_listed_models(tmp_path: Path, clock: Clock) -> None:
    model_folder(tmp_path, "a", 1, 2)
    model_folder(tmp_path, "b", 3)
    model_folder(tmp_path, "unlisted", 1)
    path = write(
        tmp_path / "models.config",
        'name: "alpha" base_path: "a" model_version_policy { all {} }',
        f'name: "beta" base_path: "{tmp_path / "b"}"',
    )
    repository = ConfigFileRepository(path)
    sources = repository.scan()
    assert sorted(sources) == ["alpha", "beta"]
    alpha = sources["alpha"]
    assert alpha.base_path == tmp_path / "a"
    assert sorted(alpha.versions) == [1, 2]
    assert alpha.config is not None
    assert alpha.config.version_policy == VersionPolicy(kind="all")
    assert sorted(sources["beta"].versions) == [3]
    assert repository.describe() == f"model config file {path}"


def test_entries_override_config_yaml_but_keep_the_rest(tmp_path: Path, clock: Clock) -> None:
    base = model_folder(tmp_path, "a", 1)
    (base / "config.yaml").write_text(
        "version_policy: all\nlabels: {old: 1}\nmax_batch_size: 16\n", encoding="utf-8"
    )
    path = write(
        tmp_path / "models.config",
        'name: "a" base_path: "a" model_version_policy { latest { num_versions: 2 } } '
        'version_labels { key: "new" value: 1 }',
    )
    config = ConfigFileRepository(path).scan()["a"].config
    assert config is not None
    assert config.version_policy == VersionPolicy(kind="latest", num_versions=2)
    assert config.labels == {"new": 1}
    assert config.max_batch_size == 16


def test_entry_without_policy_keeps_config_yaml_policy(tmp_path: Path, clock: Clock) -> None:
    base = model_folder(tmp_path, "a", 1)
    (base / "config.yaml").write_text("version_policy: all\n", encoding="utf-8")
    path = write(tmp_path / "models.config", 'name: "a" base_path: "a"')
    config = ConfigFileRepository(path).scan()["a"].config
    assert config is not None
    assert config.version_policy == VersionPolicy(kind="all")


def test_invalid_file_at_start_raises(tmp_path: Path, clock: Clock) -> None:
    path = tmp_path / "models.config"
    path.write_text("model_config_list { config {", encoding="utf-8")
    with pytest.raises(ValueError, match="not a valid TF Serving model config"):
        ConfigFileRepository(path)
    with pytest.raises(ValueError, match="cannot read the model config file"):
        ConfigFileRepository(tmp_path / "missing.config")


def test_no_poll_means_read_once(tmp_path: Path, clock: Clock) -> None:
    model_folder(tmp_path, "a", 1)
    model_folder(tmp_path, "b", 1)
    path = write(tmp_path / "models.config", 'name: "a" base_path: "a"')
    repository = ConfigFileRepository(path, poll_wait_s=0)
    write(path, 'name: "b" base_path: "b"')
    clock.now += 1e6
    assert list(repository.scan()) == ["a"]


def test_rereads_on_poll_once_the_wait_passed(tmp_path: Path, clock: Clock) -> None:
    model_folder(tmp_path, "a", 1)
    model_folder(tmp_path, "b", 1)
    path = write(tmp_path / "models.config", 'name: "a" base_path: "a"')
    repository = ConfigFileRepository(path, poll_wait_s=30)
    write(path, 'name: "b" base_path: "b"')
    clock.now += 29
    assert list(repository.scan()) == ["a"]
    clock.now += 1
    assert list(repository.scan()) == ["b"]
    write(path, 'name: "a" base_path: "a"', 'name: "b" base_path: "b"')
    clock.now += 10
    assert list(repository.scan()) == ["b"]  # the next read waits a full period again
    clock.now += 20
    assert sorted(repository.scan()) == ["a", "b"]


def test_invalid_file_keeps_last_valid_content(
    tmp_path: Path, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    model_folder(tmp_path, "a", 1)
    model_folder(tmp_path, "b", 1)
    path = write(tmp_path / "models.config", 'name: "a" base_path: "a"')
    repository = ConfigFileRepository(path, poll_wait_s=5)
    path.write_text("model_config_list { config { name: 'b' ", encoding="utf-8")
    for _ in range(3):
        clock.now += 5
        assert list(repository.scan()) == ["a"]
    errors = [r for r in caplog.records if "keeping the models of its last valid" in r.getMessage()]
    assert len(errors) == 1
    assert errors[0].levelno == logging.ERROR
    assert "not a valid TF Serving model config" in errors[0].getMessage()
    write(path, 'name: "b" base_path: "b"')
    clock.now += 5
    assert list(repository.scan()) == ["b"]


def test_semantically_invalid_file_keeps_last_valid_content(tmp_path: Path, clock: Clock) -> None:
    model_folder(tmp_path, "a", 1)
    path = write(tmp_path / "models.config", 'name: "a" base_path: "a"')
    repository = ConfigFileRepository(path, poll_wait_s=5)
    write(path, 'name: "a" base_path: "a"', 'name: "a" base_path: "b"')
    clock.now += 5
    assert list(repository.scan()) == ["a"]


def test_deleted_file_keeps_last_models(tmp_path: Path, clock: Clock) -> None:
    model_folder(tmp_path, "a", 1)
    path = write(tmp_path / "models.config", 'name: "a" base_path: "a"')
    repository = ConfigFileRepository(path, poll_wait_s=5)
    path.unlink()
    clock.now += 5
    assert list(repository.scan()) == ["a"]


def test_deleted_empty_file_is_a_scan_error(tmp_path: Path, clock: Clock) -> None:
    path = tmp_path / "models.config"
    path.write_text("", encoding="utf-8")
    repository = ConfigFileRepository(path, poll_wait_s=5)
    assert repository.scan() == {}
    path.unlink()
    clock.now += 5
    with pytest.raises(ScanError, match="is gone"):
        repository.scan()


def test_model_folder_changes_are_seen_without_rereading(tmp_path: Path, clock: Clock) -> None:
    model_folder(tmp_path, "a", 1)
    path = write(tmp_path / "models.config", 'name: "a" base_path: "a"')
    repository = ConfigFileRepository(path)
    assert sorted(repository.scan()["a"].versions) == [1]
    model_folder(tmp_path, "a", 2)
    assert sorted(repository.scan()["a"].versions) == [1, 2]


def test_logging_config_warned_once(
    tmp_path: Path, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    model_folder(tmp_path, "a", 1)
    path = write(
        tmp_path / "models.config",
        'name: "a" base_path: "a" logging_config { sampling_config { sampling_rate: 1 } }',
    )
    repository = ConfigFileRepository(path, poll_wait_s=1)
    for _ in range(3):
        clock.now += 1
        repository.scan()
    warned = [r for r in caplog.records if "logging_config" in r.getMessage()]
    assert len(warned) == 1
    assert warned[0].levelno == logging.WARNING
    assert warned[0].getMessage() == (
        "model a: logging_config in models.config is not used by modelport and is ignored"
    )
