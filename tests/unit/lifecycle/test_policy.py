"""``VersionPolicy`` and ``ModelConfig``: the accepted YAML forms, and what is refused."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from modelport.model_config import (
    ExecutionProviderConfig,
    ModelConfig,
    VersionPolicy,
    load_model_config,
)
from modelport.types import Datatype


def write_config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text, encoding="utf-8")
    return path


# ---- VersionPolicy.parse -------------------------------------------------------------------

ACCEPTED = [
    ("latest: 2", VersionPolicy(kind="latest", num_versions=2)),
    ("specific: [1, 3]", VersionPolicy(kind="specific", versions=(1, 3))),
    ("all", VersionPolicy(kind="all")),
    ("latest: {num_versions: 2}", VersionPolicy(kind="latest", num_versions=2)),
    ("specific: {versions: [1, 3]}", VersionPolicy(kind="specific", versions=(1, 3))),
    ("all: {}", VersionPolicy(kind="all")),
    ("latest: 1", VersionPolicy()),
    ("latest: {}", VersionPolicy()),
]


@pytest.mark.parametrize(("text", "expected"), ACCEPTED, ids=[t for t, _ in ACCEPTED])
def test_parse_accepts_yaml_form(text: str, expected: VersionPolicy) -> None:
    assert VersionPolicy.parse(yaml.safe_load(text)) == expected


@pytest.mark.parametrize(("text", "expected"), ACCEPTED, ids=[t for t, _ in ACCEPTED])
def test_config_file_accepts_policy_form(
    tmp_path: Path, text: str, expected: VersionPolicy
) -> None:
    if "\n" not in text and ":" in text:
        body = f"version_policy: {{{text}}}\n"
    else:
        body = f"version_policy: {text}\n"
    assert load_model_config(write_config(tmp_path, body)).version_policy == expected


def test_config_file_accepts_block_style_policy(tmp_path: Path) -> None:
    text = "version_policy:\n  specific:\n    versions:\n      - 4\n      - 2\n"
    config = load_model_config(write_config(tmp_path, text))
    assert config.version_policy == VersionPolicy(kind="specific", versions=(4, 2))


def test_parse_none_is_latest_one() -> None:
    assert VersionPolicy.parse(None) == VersionPolicy(kind="latest", num_versions=1)
    assert ModelConfig().version_policy == VersionPolicy(kind="latest", num_versions=1)


def test_parse_passes_a_policy_through() -> None:
    policy = VersionPolicy(kind="specific", versions=(2,))
    assert VersionPolicy.parse(policy) is policy
    assert ModelConfig(version_policy=policy).version_policy is policy


REFUSED: list[tuple[Any, str]] = [
    ({"latest": 0}, "latest needs a positive number of versions, not 0"),
    ({"latest": -1}, "not -1"),
    ({"latest": "2"}, "not '2'"),
    ({"latest": True}, "not True"),
    ({"latest": 1.5}, "not 1.5"),
    ({"latest": None}, "not None"),
    ({"latest": {"num_versions": 0}}, "not 0"),
    ({"specific": []}, "specific needs a non-empty list of positive version numbers"),
    ({"specific": [0]}, "specific needs a non-empty list"),
    ({"specific": [1, -3]}, "specific needs a non-empty list"),
    ({"specific": [1, "2"]}, "specific needs a non-empty list"),
    ({"specific": [True]}, "specific needs a non-empty list"),
    ({"specific": 3}, "specific needs a non-empty list"),
    ({"specific": {"versions": []}}, "specific needs a non-empty list"),
    ({"specific": {}}, "specific needs a non-empty list"),
    ({"newest": 1}, "unknown version policy 'newest'; use latest, specific or all"),
    ({"latest": 1, "all": {}}, "write one of {latest: N}, {specific: [versions]} or all"),
    ({}, "write one of"),
    ("latest", "write one of"),
    ("ALL", "write one of"),
    (3, "write one of"),
    ([1, 2], "write one of"),
]


@pytest.mark.parametrize(("raw", "message"), REFUSED, ids=[repr(r) for r, _ in REFUSED])
def test_parse_refuses_with_clear_error(raw: Any, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        VersionPolicy.parse(raw)


@pytest.mark.parametrize(("raw", "message"), REFUSED, ids=[repr(r) for r, _ in REFUSED])
def test_config_file_refuses_bad_policy_naming_the_key(
    tmp_path: Path, raw: Any, message: str
) -> None:
    path = write_config(tmp_path, yaml.safe_dump({"version_policy": raw}))
    with pytest.raises(ValueError, match=r"^invalid config\.yaml: version_policy: ") as info:
        load_model_config(path)
    assert message in str(info.value)


def test_policy_fields_are_validated_when_built_directly() -> None:
    with pytest.raises(ValidationError):
        VersionPolicy(kind="latest", num_versions=0)
    with pytest.raises(ValidationError):
        VersionPolicy(kind="specific", versions=(0,))
    with pytest.raises(ValidationError):
        VersionPolicy(kind="newest")  # type: ignore[arg-type]


# ---- VersionPolicy.select and describe --------------------------------------------------------


@pytest.mark.parametrize(
    ("policy", "available", "expected"),
    [
        (VersionPolicy(), {1, 2, 3}, {3}),
        (VersionPolicy(kind="latest", num_versions=2), {1, 2, 3}, {2, 3}),
        (VersionPolicy(kind="latest", num_versions=2), {2, 10, 9}, {9, 10}),
        (VersionPolicy(kind="latest", num_versions=5), {1, 2}, {1, 2}),
        (VersionPolicy(kind="latest", num_versions=1), set(), set()),
        (VersionPolicy(kind="specific", versions=(1, 3)), {1, 2, 3, 4}, {1, 3}),
        (VersionPolicy(kind="specific", versions=(1, 3)), {2, 3}, {3}),
        (VersionPolicy(kind="specific", versions=(7,)), {1, 2}, set()),
        (VersionPolicy(kind="all"), {1, 5, 9}, {1, 5, 9}),
        (VersionPolicy(kind="all"), set(), set()),
    ],
)
def test_select(policy: VersionPolicy, available: set[int], expected: set[int]) -> None:
    assert policy.select(available) == expected


def test_select_returns_a_new_set() -> None:
    available = {1, 2}
    chosen = VersionPolicy(kind="all").select(available)
    chosen.add(3)
    assert available == {1, 2}


def test_latest_compares_numbers_not_names() -> None:
    assert VersionPolicy().select({9, 10, 100}) == {100}


@pytest.mark.parametrize(
    ("policy", "text"),
    [
        (VersionPolicy(), "latest 1"),
        (VersionPolicy(kind="latest", num_versions=3), "latest 3"),
        (VersionPolicy(kind="specific", versions=(1, 3)), "specific [1, 3]"),
        (VersionPolicy(kind="all"), "all"),
    ],
)
def test_describe(policy: VersionPolicy, text: str) -> None:
    assert policy.describe() == text


# ---- load_model_config ------------------------------------------------------------------------

FULL = """
platform: onnxruntime_onnx
default_model_filename: net.onnx
version_policy: {latest: 2}
labels: {stable: 1, canary-2.b_x: 2}
max_batch_size: 64
inputs:
  - {name: images, datatype: FP32, shape: [-1, 784]}
outputs:
  - {name: scores, shape: [-1, 10]}
runtime:
  intra_op_threads: 2
  inter_op_threads: 1
  graph_optimization_level: basic
  execution_providers: [CPUExecutionProvider]
warmup: {enabled: false, iterations: 3, batch_size: 4}
classification: {scores: scores, classes: classes, labels: [a, b]}
regression: {output: score}
"""


def test_full_config_is_read(tmp_path: Path) -> None:
    config = load_model_config(write_config(tmp_path, FULL))
    assert config.platform == "onnxruntime_onnx"
    assert config.default_model_filename == "net.onnx"
    assert config.version_policy == VersionPolicy(kind="latest", num_versions=2)
    assert config.labels == {"stable": 1, "canary-2.b_x": 2}
    assert config.max_batch_size == 64
    assert config.inputs[0].name == "images"
    assert config.inputs[0].datatype is Datatype.FP32
    assert config.inputs[0].shape == [-1, 784]
    assert config.outputs[0].datatype is None
    assert config.runtime.intra_op_threads == 2
    assert config.runtime.graph_optimization_level == "basic"
    assert config.runtime.execution_providers == [
        ExecutionProviderConfig(name="CPUExecutionProvider")
    ]
    assert (config.warmup.enabled, config.warmup.iterations, config.warmup.batch_size) == (
        False,
        3,
        4,
    )
    assert config.classification.labels == ["a", "b"]
    assert config.regression.output == "score"


@pytest.mark.parametrize("text", ["", "# only a comment\n", "~\n"])
def test_empty_config_gives_defaults(tmp_path: Path, text: str) -> None:
    assert load_model_config(write_config(tmp_path, text)) == ModelConfig()


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("versoin_policy: all\n", "versoin_policy"),
        ("warmup: {enabeld: false}\n", "warmup.enabeld"),
        ("runtime: {threads: 2}\n", "runtime.threads"),
        ("inputs: [{name: x, dtype: FP32}]\n", "inputs.0.dtype"),
        ("runtime: {execution_providers: [{name: CUDA, option: {}}]}\n", "option"),
        ("classification: {score: s}\n", "classification.score"),
    ],
)
def test_unknown_key_is_refused_naming_it(tmp_path: Path, text: str, key: str) -> None:
    with pytest.raises(ValueError, match=r"^invalid config\.yaml: ") as info:
        load_model_config(write_config(tmp_path, text))
    assert key in str(info.value)
    assert "Extra inputs are not permitted" in str(info.value)


@pytest.mark.parametrize(
    ("labels", "where"),
    [
        ("{'bad label': 1}", "labels.bad label"),
        ("{'-lead': 1}", "labels.-lead"),
        ("{'': 1}", "labels."),
        ("{stable: 0}", "labels.stable"),
        ("{stable: -2}", "labels.stable"),
        ("{stable: two}", "labels.stable"),
        ("[stable]", "labels"),
    ],
)
def test_invalid_labels_are_refused(tmp_path: Path, labels: str, where: str) -> None:
    with pytest.raises(ValueError, match=r"^invalid config\.yaml: ") as info:
        load_model_config(write_config(tmp_path, f"labels: {labels}\n"))
    assert where in str(info.value)


def test_long_label_is_refused(tmp_path: Path) -> None:
    label = "a" * 129
    with pytest.raises(ValueError, match="labels"):
        load_model_config(write_config(tmp_path, f"labels: {{{label}: 1}}\n"))
    ok = load_model_config(write_config(tmp_path, f"labels: {{{'a' * 128}: 1}}\n"))
    assert ok.labels == {"a" * 128: 1}


def test_execution_providers_as_strings(tmp_path: Path) -> None:
    text = "runtime: {execution_providers: [CUDAExecutionProvider, CPUExecutionProvider]}\n"
    providers = load_model_config(write_config(tmp_path, text)).runtime.execution_providers
    assert providers == [
        ExecutionProviderConfig(name="CUDAExecutionProvider", options={}),
        ExecutionProviderConfig(name="CPUExecutionProvider", options={}),
    ]


def test_execution_providers_with_options_and_mixed(tmp_path: Path) -> None:
    text = """
runtime:
  execution_providers:
    - name: CUDAExecutionProvider
      options: {device_id: 1, arena_extend_strategy: kSameAsRequested}
    - CPUExecutionProvider
"""
    providers = load_model_config(write_config(tmp_path, text)).runtime.execution_providers
    assert providers[0].name == "CUDAExecutionProvider"
    assert providers[0].options == {"device_id": 1, "arena_extend_strategy": "kSameAsRequested"}
    assert providers[1] == ExecutionProviderConfig(name="CPUExecutionProvider")


@pytest.mark.parametrize(
    "providers",
    ["[{options: {}}]", "[3]", "CPUExecutionProvider"],
)
def test_bad_execution_providers_are_refused(tmp_path: Path, providers: str) -> None:
    text = f"runtime: {{execution_providers: {providers}}}\n"
    with pytest.raises(ValueError, match=r"runtime\.execution_providers"):
        load_model_config(write_config(tmp_path, text))


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("max_batch_size: -1\n", "max_batch_size"),
        ("warmup: {iterations: 0}\n", "warmup.iterations"),
        ("runtime: {graph_optimization_level: max}\n", "runtime.graph_optimization_level"),
        ("runtime: {intra_op_threads: -1}\n", "runtime.intra_op_threads"),
        ("inputs: [{name: x, datatype: FLOAT}]\n", "inputs.0.datatype"),
        ("inputs: [{name: x, shape: [-2]}]\n", "inputs.0.shape.0"),
        ("inputs: [{datatype: FP32}]\n", "inputs.0.name"),
    ],
)
def test_invalid_values_name_the_key(tmp_path: Path, text: str, where: str) -> None:
    with pytest.raises(ValueError, match=r"^invalid config\.yaml: ") as info:
        load_model_config(write_config(tmp_path, text))
    assert where in str(info.value)


def test_several_problems_are_all_reported(tmp_path: Path) -> None:
    text = "max_batch_size: -1\nwarmup: {iterations: 0}\n"
    with pytest.raises(ValueError, match="max_batch_size") as info:
        load_model_config(write_config(tmp_path, text))
    assert "warmup.iterations" in str(info.value)
    assert "; " in str(info.value)


@pytest.mark.parametrize("text", ["- a\n- b\n", "just a string\n", "3\n"])
def test_non_mapping_is_refused(tmp_path: Path, text: str) -> None:
    with pytest.raises(ValueError, match=r"^config\.yaml must hold a mapping of settings, not "):
        load_model_config(write_config(tmp_path, text))


def test_yaml_syntax_error_is_a_value_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"^cannot read config\.yaml: "):
        load_model_config(write_config(tmp_path, "labels: {stable: 1\n"))


def test_python_tags_are_not_executed(tmp_path: Path) -> None:
    text = "labels: !!python/object/apply:os.system ['echo hacked']\n"
    with pytest.raises(ValueError, match=r"^cannot read config\.yaml: "):
        load_model_config(write_config(tmp_path, text))


def test_missing_or_undecodable_file_is_a_value_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"^cannot read config\.yaml: "):
        load_model_config(tmp_path / "config.yaml")
    path = tmp_path / "config.yaml"
    path.write_bytes(b"labels: {\xff\xfe: 1}\n")
    with pytest.raises(ValueError, match=r"^cannot read config\.yaml: "):
        load_model_config(path)


def test_config_is_frozen() -> None:
    config = ModelConfig()
    with pytest.raises(ValidationError):
        config.max_batch_size = 3


# ---- fingerprint ------------------------------------------------------------------------------


def cfg(**values: Any) -> ModelConfig:
    return ModelConfig.model_validate(values)


def test_fingerprint_is_stable_and_short() -> None:
    assert cfg().fingerprint() == ModelConfig().fingerprint()
    assert len(cfg().fingerprint()) == 16
    assert (
        cfg(warmup={"iterations": 2}).fingerprint() == cfg(warmup={"iterations": 2}).fingerprint()
    )


def test_fingerprint_ignores_policy_and_labels() -> None:
    base = cfg().fingerprint()
    assert cfg(version_policy="all").fingerprint() == base
    assert cfg(version_policy={"specific": [1, 2]}).fingerprint() == base
    assert cfg(labels={"stable": 1}).fingerprint() == base
    assert cfg(version_policy={"latest": 3}, labels={"a": 1, "b": 2}).fingerprint() == base


@pytest.mark.parametrize(
    "values",
    [
        {"runtime": {"intra_op_threads": 4}},
        {"runtime": {"inter_op_threads": 2}},
        {"runtime": {"graph_optimization_level": "basic"}},
        {"runtime": {"execution_providers": ["CUDAExecutionProvider"]}},
        {"warmup": {"enabled": False}},
        {"max_batch_size": 8},
        {"inputs": [{"name": "x", "shape": [1, 2]}]},
        {"classification": {"scores": "s"}},
        {"default_model_filename": "net.onnx"},
    ],
)
def test_fingerprint_changes_with_shaping_settings(values: dict[str, Any]) -> None:
    assert cfg(**values).fingerprint() != cfg().fingerprint()


def test_fingerprint_changes_with_provider_options() -> None:
    def with_device(device: int) -> ModelConfig:
        provider = {"name": "CUDAExecutionProvider", "options": {"device_id": device}}
        return cfg(runtime={"execution_providers": [provider]})

    assert with_device(0).fingerprint() != with_device(1).fingerprint()
    assert with_device(0).fingerprint() == with_device(0).fingerprint()
    plain = cfg(runtime={"execution_providers": ["CUDAExecutionProvider"]})
    assert plain.fingerprint() != with_device(0).fingerprint()
