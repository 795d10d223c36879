"""Loading a version folder: engine choice, signature overrides, task outputs, warm-up."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from modelport.errors import InvalidInput, ModelLoadError
from modelport.lifecycle import loader as loader_module
from modelport.lifecycle.loader import (
    LoadedVersion,
    apply_overrides,
    load_version,
    runtime_options,
    warm_up,
)
from modelport.lifecycle.repository import VersionFolder, fingerprint
from modelport.model_config import ModelConfig
from modelport.runtimes.base import ExecutionProvider, Runtime, RuntimeOptions
from modelport.runtimes.mock import MockRuntime
from modelport.runtimes.onnx import OnnxRuntime
from modelport.types import Datatype, Signature, TensorSpec
from tests.models import constant_model, identity_model, save, string_model

CONTEXT = "model m version 1"


def cfg(**values: Any) -> ModelConfig:
    return ModelConfig.model_validate(values)


def version_folder(path: Path) -> VersionFolder:
    return VersionFolder(1, path, fingerprint(path))


@pytest.fixture
def identity(tmp_path: Path) -> VersionFolder:
    """A version folder holding ``input`` FP32 [-1, 3] -> ``output`` FP32 [-1, 3]."""
    save(identity_model("FP32"), tmp_path / "1" / "model.onnx")
    return version_folder(tmp_path / "1")


def load(folder: VersionFolder, config: ModelConfig | None = None) -> LoadedVersion:
    loaded = load_version(folder, config or ModelConfig(), CONTEXT)
    assert isinstance(loaded, LoadedVersion)
    return loaded


# ---- real ONNX models -------------------------------------------------------------------------


def test_loads_onnx_and_reads_signature(identity: VersionFolder) -> None:
    loaded = load(identity)
    try:
        assert isinstance(loaded.runtime, OnnxRuntime)
        assert loaded.signature == Signature(
            inputs=(TensorSpec("input", Datatype.FP32, (-1, 3)),),
            outputs=(TensorSpec("output", Datatype.FP32, (-1, 3)),),
        )
        data = np.arange(6, dtype=np.float32).reshape(2, 3)
        result = loaded.runtime.infer({"input": data}, ["output"])
        np.testing.assert_array_equal(result["output"], data)
    finally:
        loaded.runtime.unload()


def test_loads_a_single_onnx_file_of_another_name(tmp_path: Path) -> None:
    save(constant_model(4.0), tmp_path / "1" / "net.onnx")
    loaded = load(version_folder(tmp_path / "1"))
    try:
        assert loaded.signature.input_names == ("x",)
        assert loaded.signature.output_names == ("y",)
        result = loaded.runtime.infer({"x": np.zeros((1, 1), np.float32)}, ["y"])
        assert result["y"].tolist() == [[4.0]]
    finally:
        loaded.runtime.unload()


def test_default_model_filename_picks_the_file(tmp_path: Path) -> None:
    save(constant_model(1.0), tmp_path / "1" / "model.onnx")
    save(constant_model(2.0), tmp_path / "1" / "chosen.onnx")
    loaded = load(version_folder(tmp_path / "1"), cfg(default_model_filename="chosen.onnx"))
    try:
        result = loaded.runtime.infer({"x": np.zeros((1, 1), np.float32)}, ["y"])
        assert result["y"].tolist() == [[2.0]]
    finally:
        loaded.runtime.unload()


def test_bytes_model_warms_up(tmp_path: Path) -> None:
    save(string_model(), tmp_path / "1" / "model.onnx")
    loaded = load(version_folder(tmp_path / "1"))
    loaded.runtime.unload()
    assert loaded.signature.input("text") == TensorSpec("text", Datatype.BYTES, (-1,))


def test_no_model_file_names_model_onnx(tmp_path: Path) -> None:
    (tmp_path / "1").mkdir()
    (tmp_path / "1" / "README.txt").write_text("no model here", encoding="utf-8")
    with pytest.raises(ModelLoadError) as info:
        load(version_folder(tmp_path / "1"))
    # every engine adds its file name to the list
    assert str(info.value).startswith("no model file in version folder 1: expected model.onnx")


def test_two_onnx_files_without_model_onnx_is_ambiguous(tmp_path: Path) -> None:
    save(constant_model(1.0), tmp_path / "1" / "a.onnx")
    save(constant_model(2.0), tmp_path / "1" / "b.onnx")
    with pytest.raises(ModelLoadError, match=r"expected model\.onnx"):
        load(version_folder(tmp_path / "1"))


def test_missing_default_model_filename_is_named(tmp_path: Path) -> None:
    save(constant_model(1.0), tmp_path / "1" / "model.onnx")
    with pytest.raises(ModelLoadError, match=r"expected chosen\.onnx$"):
        load(version_folder(tmp_path / "1"), cfg(default_model_filename="chosen.onnx"))


def test_corrupt_model_file(tmp_path: Path) -> None:
    (tmp_path / "1").mkdir()
    (tmp_path / "1" / "model.onnx").write_bytes(b"this is not protobuf")
    with pytest.raises(ModelLoadError, match=r"^onnxruntime could not load model\.onnx: "):
        load(version_folder(tmp_path / "1"))


def test_input_datatype_contradiction(identity: VersionFolder) -> None:
    config = cfg(inputs=[{"name": "input", "datatype": "INT64"}])
    with pytest.raises(ModelLoadError) as info:
        load(identity, config)
    assert str(info.value) == (
        "config.yaml says input 'input' is INT64, but the model declares FP32; "
        "remove the datatype or re-export the model"
    )


def test_output_datatype_contradiction(identity: VersionFolder) -> None:
    config = cfg(outputs=[{"name": "output", "datatype": "FP16"}])
    with pytest.raises(ModelLoadError, match=r"config\.yaml says output 'output' is FP16"):
        load(identity, config)


def test_matching_datatype_is_accepted(identity: VersionFolder) -> None:
    loaded = load(identity, cfg(inputs=[{"name": "input", "datatype": "FP32"}]))
    loaded.runtime.unload()
    assert loaded.signature.inputs[0].datatype is Datatype.FP32


def test_fixed_dimension_contradiction(identity: VersionFolder) -> None:
    config = cfg(inputs=[{"name": "input", "shape": [-1, 4]}])
    with pytest.raises(ModelLoadError) as info:
        load(identity, config)
    assert str(info.value) == (
        "config.yaml gives input 'input' the shape [-1, 4], which contradicts the model's fixed "
        "shape [-1, 3]"
    )


def test_fixed_dimension_cannot_be_loosened(identity: VersionFolder) -> None:
    with pytest.raises(ModelLoadError, match="contradicts the model's fixed shape"):
        load(identity, cfg(inputs=[{"name": "input", "shape": [-1, -1]}]))


def test_rank_contradiction(identity: VersionFolder) -> None:
    with pytest.raises(ModelLoadError) as info:
        load(identity, cfg(outputs=[{"name": "output", "shape": [3]}]))
    assert str(info.value) == (
        "config.yaml gives output 'output' the shape [3], but the model declares 2 dimensions "
        "[-1, 3]"
    )


def test_unknown_override_name(identity: VersionFolder) -> None:
    with pytest.raises(ModelLoadError) as info:
        load(identity, cfg(inputs=[{"name": "images"}]))
    assert str(info.value) == (
        "config.yaml declares input 'images', but the model's inputs are: input"
    )
    with pytest.raises(ModelLoadError, match="declares output 'scores', but the model's outputs"):
        load(identity, cfg(outputs=[{"name": "scores"}]))


def test_shape_override_fixes_a_dynamic_dimension(identity: VersionFolder) -> None:
    config = cfg(
        inputs=[{"name": "input", "shape": [2, 3]}],
        outputs=[{"name": "output", "datatype": "FP32", "shape": [2, 3]}],
        warmup={"batch_size": 5},  # the fixed batch dimension wins over the warm-up batch
    )
    loaded = load(identity, config)
    loaded.runtime.unload()
    assert loaded.signature.input("input") == TensorSpec("input", Datatype.FP32, (2, 3))
    assert loaded.signature.output("output") == TensorSpec("output", Datatype.FP32, (2, 3))
    assert loaded.signature.input_checks[0][3] == ((0, 2), (1, 3))


def test_classification_scores_must_name_an_output(identity: VersionFolder) -> None:
    with pytest.raises(ModelLoadError) as info:
        load(identity, cfg(classification={"scores": "probabilities"}))
    assert str(info.value) == (
        "config.yaml classification.scores names output 'probabilities', but the model's outputs "
        "are: output"
    )


@pytest.mark.parametrize(
    ("values", "key"),
    [
        ({"classification": {"classes": "labels"}}, "classification.classes"),
        ({"regression": {"output": "score"}}, "regression.output"),
    ],
)
def test_other_task_outputs_must_name_an_output(
    identity: VersionFolder, values: dict[str, Any], key: str
) -> None:
    with pytest.raises(ModelLoadError, match=f"^{re.escape(f'config.yaml {key} names output ')}"):
        load(identity, cfg(**values))


def test_task_outputs_naming_real_outputs_load(identity: VersionFolder) -> None:
    config = cfg(classification={"scores": "output"}, regression={"output": "output"})
    load(identity, config).runtime.unload()


# ---- load_version with a stand-in engine ------------------------------------------------------

SIGNATURE = Signature(
    inputs=(
        TensorSpec("x", Datatype.FP32, (-1, 4, -1)),
        TensorSpec("ids", Datatype.INT64, (2,)),
        TensorSpec("text", Datatype.BYTES, (-1,)),
    ),
    outputs=(TensorSpec("y", Datatype.FP32, (-1,)), TensorSpec("z", Datatype.FP32, (-1,))),
)


class Recorder:
    """An infer function that records what it was called with, and can raise."""

    def __init__(self, error: Exception | None = None) -> None:
        self.seen: list[dict[str, np.ndarray[Any, Any]]] = []
        self.error = error

    def __call__(self, inputs: Mapping[str, np.ndarray[Any, Any]]) -> dict[str, Any]:
        self.seen.append(dict(inputs))
        if self.error is not None:
            raise self.error
        return {"y": np.zeros(1, np.float32), "z": np.zeros(1, np.float32)}


def install_engine(monkeypatch: pytest.MonkeyPatch, runtime: MockRuntime) -> None:
    """Make ``load_version`` pick an engine whose ``load`` returns ``runtime``."""

    class Engine(MockRuntime):
        @classmethod
        def load(cls, model_path: Path, options: RuntimeOptions, context: str = "") -> Runtime:
            return runtime

    def select(version_dir: Path, filename: str | None) -> tuple[type[Runtime], Path]:
        return Engine, version_dir / "model.mock"

    monkeypatch.setattr(loader_module, "select_runtime", select)


def test_failed_check_unloads_the_runtime(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    runtime = MockRuntime(SIGNATURE, Recorder())
    install_engine(monkeypatch, runtime)
    with pytest.raises(ModelLoadError, match="declares input 'nope'"):
        load_version(version_folder(tmp_path), cfg(inputs=[{"name": "nope"}]), CONTEXT)
    assert runtime.unloaded


def test_failed_warm_up_unloads_the_runtime(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    runtime = MockRuntime(SIGNATURE, Recorder(RuntimeError("out of memory")))
    install_engine(monkeypatch, runtime)
    with pytest.raises(ModelLoadError, match="warm-up inference failed: out of memory"):
        load_version(version_folder(tmp_path), ModelConfig(), CONTEXT)
    assert runtime.unloaded


def test_successful_load_keeps_the_runtime(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    runtime = MockRuntime(SIGNATURE, Recorder())
    install_engine(monkeypatch, runtime)
    loaded = load_version(version_folder(tmp_path), ModelConfig(), CONTEXT)
    assert loaded.runtime is runtime
    assert loaded.signature == SIGNATURE
    assert not runtime.unloaded
    assert runtime.calls == 1


def test_warm_up_failure_suggests_disabling_it() -> None:
    runtime = MockRuntime(SIGNATURE, Recorder(ValueError("needs real pixels")))
    with pytest.raises(ModelLoadError) as info:
        warm_up(runtime, SIGNATURE, ModelConfig())
    assert str(info.value) == (
        "warm-up inference failed: needs real pixels; if the model needs particular inputs, "
        "set warmup: {enabled: false} in config.yaml"
    )
    assert isinstance(info.value.__cause__, ValueError)


def test_warm_up_failure_uses_modelport_error_message() -> None:
    runtime = MockRuntime(SIGNATURE, Recorder(InvalidInput("ids must be positive")))
    with pytest.raises(ModelLoadError, match=r"^warm-up inference failed: ids must be positive;"):
        warm_up(runtime, SIGNATURE, ModelConfig())


def test_warm_up_disabled_runs_nothing() -> None:
    recorder = Recorder(RuntimeError("must not run"))
    runtime = MockRuntime(SIGNATURE, recorder)
    warm_up(runtime, SIGNATURE, cfg(warmup={"enabled": False}))
    assert runtime.calls == 0


def test_warm_up_iterations_and_generated_inputs() -> None:
    recorder = Recorder()
    runtime = MockRuntime(SIGNATURE, recorder)
    warm_up(runtime, SIGNATURE, cfg(warmup={"iterations": 3, "batch_size": 4}))
    assert runtime.calls == 3
    inputs = recorder.seen[0]
    assert inputs["x"].shape == (4, 4, 1)
    assert inputs["x"].dtype == np.float32
    assert not inputs["x"].any()
    assert inputs["ids"].shape == (2,)
    assert inputs["ids"].dtype == np.int64
    assert inputs["text"].shape == (4,)
    assert inputs["text"].dtype == object
    assert inputs["text"].tolist() == [b""] * 4


def test_warm_up_asks_for_every_output() -> None:
    asked: list[tuple[str, ...]] = []

    class Asking(MockRuntime):
        def infer(
            self, inputs: Mapping[str, np.ndarray[Any, Any]], outputs: Any
        ) -> dict[str, np.ndarray[Any, Any]]:
            asked.append(tuple(outputs))
            return super().infer(inputs, outputs)

    warm_up(Asking(SIGNATURE, Recorder()), SIGNATURE, ModelConfig())
    assert asked == [("y", "z")]


# ---- helpers ----------------------------------------------------------------------------------


def test_runtime_options_from_config() -> None:
    config = cfg(
        runtime={
            "intra_op_threads": 3,
            "inter_op_threads": 2,
            "graph_optimization_level": "extended",
            "execution_providers": [
                {"name": "CUDAExecutionProvider", "options": {"device_id": 1}},
                "CPUExecutionProvider",
            ],
        }
    )
    assert runtime_options(config) == RuntimeOptions(
        intra_op_threads=3,
        inter_op_threads=2,
        execution_providers=(
            ExecutionProvider("CUDAExecutionProvider", {"device_id": 1}),
            ExecutionProvider("CPUExecutionProvider", {}),
        ),
        graph_optimization_level="extended",
    )
    assert runtime_options(ModelConfig()) == RuntimeOptions()


def test_apply_overrides_keeps_model_order() -> None:
    config = cfg(inputs=[{"name": "text", "shape": [5]}, {"name": "x", "shape": [1, 4, 2]}])
    signature = apply_overrides(SIGNATURE, config)
    assert signature.input_names == ("x", "ids", "text")
    assert signature.input("x") == TensorSpec("x", Datatype.FP32, (1, 4, 2))
    assert signature.input("text") == TensorSpec("text", Datatype.BYTES, (5,))
    assert signature.outputs == SIGNATURE.outputs


def test_apply_overrides_without_overrides_is_equal() -> None:
    assert apply_overrides(SIGNATURE, ModelConfig()) == SIGNATURE
