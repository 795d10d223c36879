"""TF Serving's batching parameters file, mapped onto dynamic_batching."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelport.lifecycle.repository import OnceLog, scan_model
from modelport.lifecycle.tfbatching import batching_defaults, parse_batching_parameters
from modelport.runtimes import available_cpus

EXAMPLE = """
max_batch_size { value: 32 }
batch_timeout_micros { value: 500 }
max_enqueued_batches { value: 4 }
num_batch_threads { value: 2 }
allowed_batch_sizes: 8
allowed_batch_sizes: 16
allowed_batch_sizes: 32
pad_variable_length_inputs: true
"""


def test_every_field_maps() -> None:
    config, threads = parse_batching_parameters(EXAMPLE)
    assert threads == 2
    assert config.max_batch_size == 32
    assert config.max_queue_delay_us == 500
    assert config.max_queue_size == 4 * 32
    assert config.preferred_batch_sizes == [8, 16, 32]
    assert config.pad_variable_length_inputs
    assert not config.split_large_requests


def test_tf_serving_defaults_when_unset() -> None:
    config, threads = parse_batching_parameters("")
    assert config.max_batch_size == 1000
    assert config.max_queue_delay_us == 0
    assert config.max_queue_size == 10 * 1000
    assert threads == available_cpus()


def test_large_batch_splitting_executes_at_most_the_execution_size() -> None:
    config, _ = parse_batching_parameters(
        "max_batch_size { value: 256 } enable_large_batch_splitting { value: true } "
        "max_execution_batch_size { value: 64 }"
    )
    assert config.split_large_requests
    assert config.max_batch_size == 64


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("max_batch_size { value: 8 } allowed_batch_sizes: 4", "end with max_batch_size"),
        ("allowed_batch_sizes: 8 allowed_batch_sizes: 4", "must increase"),
        ("max_batch_size: 3", "not valid TF Serving batching parameters"),
        ("bogus { value: 1 }", "bogus"),
        ("max_batch_size { value: 0 }", "max_batch_size"),
        ("num_batch_threads { value: 0 }", "num_batch_threads"),
    ],
)
def test_errors(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_batching_parameters(text)


def test_defaults_apply_where_config_yaml_is_silent(tmp_path: Path) -> None:
    params = tmp_path / "batching.txt"
    params.write_text(EXAMPLE)
    defaults = batching_defaults(params)
    silent = tmp_path / "silent"
    (silent / "1").mkdir(parents=True)
    own = tmp_path / "own"
    (own / "1").mkdir(parents=True)
    (own / "config.yaml").write_text("dynamic_batching: {max_batch_size: 4}\ninstances: 3\n")
    first = scan_model("silent", silent, OnceLog(), defaults=defaults).config
    second = scan_model("own", own, OnceLog(), defaults=defaults).config
    assert first is not None
    assert second is not None
    assert first.dynamic_batching is not None
    assert first.dynamic_batching.max_batch_size == 32
    assert first.instances == 2
    assert first.inherited("dynamic_batching")
    assert second.dynamic_batching is not None
    assert second.dynamic_batching.max_batch_size == 4
    assert second.instances == 3
    assert not second.inherited("dynamic_batching")


def test_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cannot read the batching parameters file"):
        batching_defaults(tmp_path / "missing.txt")
