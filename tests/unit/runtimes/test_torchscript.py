"""The PyTorch engines: TorchScript ``model.pt`` and torch.export ``model.pt2``, on real files."""

from __future__ import annotations

import logging
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from modelport.errors import InvalidInput, ModelLoadError, RuntimeFailure
from modelport.lifecycle.loader import load_version
from modelport.lifecycle.repository import VersionFolder, fingerprint
from modelport.model_config import ModelConfig, TensorOverride
from modelport.runtimes import select_runtime
from modelport.runtimes.base import ExecutionProvider, RuntimeOptions
from modelport.runtimes.onnx import OnnxRuntime
from modelport.runtimes.sklearn import SklearnRuntime
from modelport.runtimes.torchscript import TorchExportRuntime, TorchScriptRuntime, _choose_device
from modelport.types import Datatype, Signature, TensorSpec
from tests.torch_models import (
    MLP_CONFIG,
    PAIR_CONFIG,
    Mlp,
    Pair,
    PairDict,
    rows,
    run,
    save_exported,
    save_torchscript,
)

LOG = "modelport.runtimes.torchscript"
#: ``x`` FP32 [-1, 4] in and out, for models returning a tensor like their input.
SAME_IN_AND_OUT = {"inputs": MLP_CONFIG["inputs"], "outputs": MLP_CONFIG["inputs"]}

#: PyTorch 2.13 deprecates TorchScript (torch.jit) in favour of torch.export; modelport serves both.
pytestmark = pytest.mark.filterwarnings("ignore:`torch\\.jit\\.:DeprecationWarning")


def declared(config: dict[str, Any], **extra: Any) -> RuntimeOptions:
    """RuntimeOptions carrying ``config``'s inputs and outputs, as the loader builds them."""
    return RuntimeOptions(
        declared_inputs=tuple(TensorOverride.model_validate(t) for t in config.get("inputs", [])),
        declared_outputs=tuple(TensorOverride.model_validate(t) for t in config.get("outputs", [])),
        **extra,
    )


def tensors(*specs: tuple[str, str, list[int]]) -> list[dict[str, Any]]:
    return [{"name": n, "datatype": d, "shape": s} for n, d, s in specs]


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Each test model saved once: TorchScript (``*.pt``) and exported (``*.pt2``)."""
    root = tmp_path_factory.mktemp("torch")
    pair_example = (rows(3), rows(3, seed=1))
    return {
        "mlp.pt": save_torchscript(Mlp(), root / "mlp" / "model.pt"),
        "pair.pt": save_torchscript(Pair(), root / "pair" / "model.pt"),
        "pair_dict.pt": save_torchscript(PairDict(), root / "pair_dict" / "model.pt"),
        "mlp.pt2": save_exported(Mlp(), (torch.from_numpy(rows(3)),), root / "e" / "model.pt2"),
        "pair.pt2": save_exported(
            Pair(), tuple(map(torch.from_numpy, pair_example)), root / "ep" / "model.pt2"
        ),
        "pair_dict.pt2": save_exported(
            PairDict(), tuple(map(torch.from_numpy, pair_example)), root / "ed" / "model.pt2"
        ),
    }


@pytest.fixture
def mlp(files: dict[str, Path]) -> Iterator[TorchScriptRuntime]:
    runtime = TorchScriptRuntime.load(files["mlp.pt"], declared(MLP_CONFIG), "model mlp")
    yield runtime
    runtime.unload()


@pytest.fixture
def exported(files: dict[str, Path]) -> Iterator[TorchExportRuntime]:
    runtime = TorchExportRuntime.load(files["mlp.pt2"], RuntimeOptions(), "model mlp")
    yield runtime
    runtime.unload()


# ---- TorchScript --------------------------------------------------------------------------------


def test_torchscript_serves_the_declared_signature(mlp: TorchScriptRuntime) -> None:
    assert mlp.platform == "pytorch_libtorch"
    assert mlp.signature == Signature(
        inputs=(TensorSpec("x", Datatype.FP32, (-1, 4)),),
        outputs=(TensorSpec("y", Datatype.FP32, (-1, 3)),),
    )
    assert mlp.device == "cpu"


def test_torchscript_infers_what_torch_computes(mlp: TorchScriptRuntime) -> None:
    x = rows(5)
    result = mlp.infer({"x": x}, ["y"])
    assert list(result) == ["y"]
    assert result["y"].dtype == np.float32
    np.testing.assert_array_equal(result["y"], run(Mlp(), x))


def test_tuple_outputs_take_the_declared_names_in_order(files: dict[str, Path]) -> None:
    runtime = TorchScriptRuntime.load(files["pair.pt"], declared(PAIR_CONFIG))
    a, b = rows(2), rows(2, seed=1)
    result = runtime.infer({"a": a, "b": b}, ["product", "sum"])
    assert list(result) == ["product", "sum"]
    np.testing.assert_array_equal(result["sum"], a + b)
    np.testing.assert_array_equal(result["product"], a * b)


def test_dict_outputs_are_matched_by_key(files: dict[str, Path]) -> None:
    runtime = TorchScriptRuntime.load(files["pair_dict.pt"], declared(PAIR_CONFIG))
    a, b = rows(2), rows(2, seed=1)
    result = runtime.infer({"b": b, "a": a}, ["sum"])
    np.testing.assert_array_equal(result["sum"], a + b)


def test_dict_output_missing_a_declared_key_fails_the_call(files: dict[str, Path]) -> None:
    config = {**PAIR_CONFIG, "outputs": tensors(("total", "FP32", [-1, 4]))}
    runtime = TorchScriptRuntime.load(files["pair_dict.pt"], declared(config))
    with pytest.raises(RuntimeFailure, match=r"lacks the outputs \['total'\]"):
        runtime.infer({"a": rows(1), "b": rows(1)}, ["total"])


def test_returning_fewer_values_than_declared_outputs_fails_the_call(
    files: dict[str, Path],
) -> None:
    config = {**MLP_CONFIG, "outputs": [*MLP_CONFIG["outputs"], *tensors(("z", "FP32", [-1]))]}
    runtime = TorchScriptRuntime.load(files["mlp.pt"], declared(config))
    with pytest.raises(RuntimeFailure, match="returned 1 values, but its signature has 2 outputs"):
        runtime.infer({"x": rows(1)}, ["y", "z"])


def test_an_output_of_another_datatype_than_declared_fails_the_call(
    files: dict[str, Path],
) -> None:
    config = {**MLP_CONFIG, "outputs": tensors(("y", "FP64", [-1, 3]))}
    runtime = TorchScriptRuntime.load(files["mlp.pt"], declared(config))
    with pytest.raises(RuntimeFailure, match="returned output 'y' as FP32, but its signature"):
        runtime.infer({"x": rows(1)}, ["y"])


def test_without_declarations_the_load_says_what_to_add(files: dict[str, Path]) -> None:
    with pytest.raises(ModelLoadError) as caught:
        TorchScriptRuntime.load(files["pair.pt"], RuntimeOptions())
    message = str(caught.value)
    assert "model.pt records no datatypes or shapes" in message
    assert "config.yaml must declare inputs and outputs" in message
    assert "inputs: [{name: a, datatype: FP32, shape: [-1, 4]}, {name: b," in message
    assert "outputs: [{name: output_0, datatype: FP32, shape: [-1, 2]}]" in message


def test_declaring_only_inputs_asks_for_the_outputs(files: dict[str, Path]) -> None:
    options = declared({"inputs": MLP_CONFIG["inputs"]})
    with pytest.raises(ModelLoadError, match="must declare outputs: ") as caught:
        TorchScriptRuntime.load(files["mlp.pt"], options)
    assert "inputs: [" not in str(caught.value)


def test_a_declaration_without_datatype_or_shape_is_refused(files: dict[str, Path]) -> None:
    config = {**MLP_CONFIG, "inputs": [{"name": "x", "shape": [-1, 4]}]}
    with pytest.raises(ModelLoadError, match="declares input 'x' without a datatype;"):
        TorchScriptRuntime.load(files["mlp.pt"], declared(config))
    config = {**MLP_CONFIG, "outputs": [{"name": "y"}]}
    with pytest.raises(ModelLoadError, match="declares output 'y' without a datatype and shape"):
        TorchScriptRuntime.load(files["mlp.pt"], declared(config))


def test_one_declared_input_per_forward_argument(files: dict[str, Path]) -> None:
    config = {**PAIR_CONFIG, "inputs": PAIR_CONFIG["inputs"][:1]}
    with pytest.raises(ModelLoadError, match=r"declares 1 inputs, but forward\(\) of model.pt"):
        TorchScriptRuntime.load(files["pair.pt"], declared(config))


def test_repeated_names_are_refused(files: dict[str, Path]) -> None:
    config = {**PAIR_CONFIG, "inputs": [PAIR_CONFIG["inputs"][0]] * 2}
    with pytest.raises(ModelLoadError, match="declares the input 'a' more than once"):
        TorchScriptRuntime.load(files["pair.pt"], declared(config))


def test_bytes_tensors_are_refused_at_load(files: dict[str, Path]) -> None:
    config = {**MLP_CONFIG, "inputs": tensors(("x", "BYTES", [-1]))}
    with pytest.raises(
        ModelLoadError, match=re.escape("declares 'x' as BYTES, but model.pt takes")
    ):
        TorchScriptRuntime.load(files["mlp.pt"], declared(config))


def test_a_pickled_module_is_not_loaded(tmp_path: Path) -> None:
    path = tmp_path / "model.pt"
    torch.save(Mlp().state_dict(), path)
    with pytest.raises(
        ModelLoadError, match=re.escape("must be a TorchScript file written by torch.jit")
    ):
        TorchScriptRuntime.load(path, declared(MLP_CONFIG))


def test_read_only_inputs_are_copied_before_an_in_place_model_runs(tmp_path: Path) -> None:
    class AddOneInPlace(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.add_(1)

    path = save_torchscript(AddOneInPlace(), tmp_path / "model.pt")
    runtime = TorchScriptRuntime.load(path, declared(SAME_IN_AND_OUT))
    frozen = np.frombuffer(np.zeros((2, 4), np.float32).tobytes(), np.float32).reshape(2, 4)
    result = runtime.infer({"x": frozen}, ["x"])
    np.testing.assert_array_equal(result["x"], np.ones((2, 4), np.float32))
    np.testing.assert_array_equal(frozen, np.zeros((2, 4), np.float32))


@pytest.mark.parametrize("datatype", ["BF16", "FP16", "INT8", "UINT8", "INT32", "INT64", "BOOL"])
def test_every_numeric_datatype_passes_through(tmp_path: Path, datatype: str) -> None:
    class Identity(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.clone()

    path = save_torchscript(Identity(), tmp_path / "model.pt")
    spec = tensors(("x", datatype, [-1, 4]))
    runtime = TorchScriptRuntime.load(path, declared({"inputs": spec, "outputs": spec}))
    x = (rows(3) * 10).astype(Datatype(datatype).numpy_dtype)
    result = runtime.infer({"x": x}, ["x"])["x"]
    assert result.dtype == x.dtype
    np.testing.assert_array_equal(result, x)


# ---- torch.export --------------------------------------------------------------------------------


def test_exported_signature_comes_from_the_program(exported: TorchExportRuntime) -> None:
    assert exported.platform == "pytorch_export"
    assert exported.signature == Signature(
        inputs=(TensorSpec("x", Datatype.FP32, (-1, 4)),),
        outputs=(TensorSpec("output_0", Datatype.FP32, (-1, 3)),),
    )


def test_exported_infers_what_torch_computes(exported: TorchExportRuntime) -> None:
    for count in (1, 7):
        x = rows(count, seed=count)
        result = exported.infer({"x": x}, ["output_0"])
        np.testing.assert_allclose(result["output_0"], run(Mlp(), x), rtol=0, atol=1e-6)


def test_exported_tuple_outputs_are_numbered(files: dict[str, Path]) -> None:
    runtime = TorchExportRuntime.load(files["pair.pt2"], RuntimeOptions())
    assert runtime.signature.input_names == ("a", "b")
    assert runtime.signature.output_names == ("output_0", "output_1")
    a, b = rows(2), rows(2, seed=1)
    result = runtime.infer({"a": a, "b": b}, ["output_1", "output_0"])
    np.testing.assert_array_equal(result["output_0"], a + b)
    np.testing.assert_array_equal(result["output_1"], a * b)


def test_config_names_exported_tuple_outputs_in_order(files: dict[str, Path]) -> None:
    config = {"outputs": [{"name": "sum"}, {"name": "product"}]}
    runtime = TorchExportRuntime.load(files["pair.pt2"], declared(config))
    assert runtime.signature.output_names == ("sum", "product")
    a, b = rows(2), rows(2, seed=1)
    np.testing.assert_array_equal(runtime.infer({"a": a, "b": b}, ["product"])["product"], a * b)
    with pytest.raises(
        ModelLoadError, match=re.escape("declares 1 outputs, but model.pt2 returns 2")
    ):
        TorchExportRuntime.load(files["pair.pt2"], declared({"outputs": [{"name": "sum"}]}))


def test_exported_dict_outputs_are_named_by_key(files: dict[str, Path]) -> None:
    runtime = TorchExportRuntime.load(files["pair_dict.pt2"], RuntimeOptions())
    assert runtime.signature.output_names == ("product", "sum")
    assert runtime.signature.output("sum") == TensorSpec("sum", Datatype.FP32, (-1, 4))
    a, b = rows(2), rows(2, seed=1)
    result = runtime.infer({"a": a, "b": b}, ["sum", "product"])
    np.testing.assert_array_equal(result["sum"], a + b)
    np.testing.assert_array_equal(result["product"], a * b)


def test_exported_keyword_arguments_are_refused(tmp_path: Path) -> None:
    class Keyword(nn.Module):
        def forward(self, x: torch.Tensor, *, scale: torch.Tensor) -> torch.Tensor:
            return x * scale

    program = torch.export.export(
        Keyword(), (torch.ones(2, 4),), kwargs={"scale": torch.ones(2, 4)}
    )
    torch.export.save(program, str(tmp_path / "model.pt2"))
    with pytest.raises(ModelLoadError, match="takes keyword or nested arguments"):
        TorchExportRuntime.load(tmp_path / "model.pt2", RuntimeOptions())


def test_exported_programs_load_in_parallel_threads(files: dict[str, Path]) -> None:
    # torch.export.load keeps global state; the server loads versions on several threads.
    names = ["mlp.pt2", "pair.pt2", "pair_dict.pt2", "mlp.pt2"]
    loaded: list[str] = []
    errors: list[BaseException] = []
    start = threading.Barrier(len(names))

    def load(name: str) -> None:
        start.wait()
        try:
            loaded.append(TorchExportRuntime.load(files[name], RuntimeOptions()).platform)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=load, args=(name,)) for name in names]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert loaded == ["pytorch_export"] * len(names)


def test_a_file_that_is_not_an_exported_program_is_refused(tmp_path: Path) -> None:
    (tmp_path / "model.pt2").write_bytes(b"not a zip archive")
    with pytest.raises(
        ModelLoadError, match=re.escape("torch.export.load could not read model.pt2")
    ):
        TorchExportRuntime.load(tmp_path / "model.pt2", RuntimeOptions())


# ---- errors, unload, threads, devices ----------------------------------------------------------


def test_wrong_width_is_invalid_input(files: dict[str, Path], exported: TorchExportRuntime) -> None:
    # Declaring the width dynamic lets a bad width reach the engine, as a loose config would.
    loose = {**MLP_CONFIG, "inputs": tensors(("x", "FP32", [-1, -1]))}
    runtime = TorchScriptRuntime.load(files["mlp.pt"], declared(loose))
    with pytest.raises(InvalidInput, match="mat1 and mat2 shapes cannot be multiplied"):
        runtime.infer({"x": rows(2, width=5)}, ["y"])
    with pytest.raises(InvalidInput, match="the model rejected the input"):
        exported.infer({"x": rows(2, width=5)}, ["output_0"])


def test_an_out_of_range_index_is_invalid_input(tmp_path: Path) -> None:
    class Lookup(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.table = nn.Embedding(10, 2)

        def forward(self, ids: torch.Tensor) -> torch.Tensor:
            return self.table(ids)

    path = save_torchscript(Lookup(), tmp_path / "model.pt")
    config = {"inputs": tensors(("ids", "INT64", [-1])), "outputs": tensors(("v", "FP32", [-1, 2]))}
    runtime = TorchScriptRuntime.load(path, declared(config))
    assert runtime.infer({"ids": np.array([0, 9])}, ["v"])["v"].shape == (2, 2)
    with pytest.raises(InvalidInput, match="index out of range"):
        runtime.infer({"ids": np.array([10])}, ["v"])


def test_other_model_errors_are_runtime_failures(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    class Broken(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if bool(x.sum() > 100):
                raise RuntimeError("the model's own check failed")
            return x

    path = save_torchscript(Broken(), tmp_path / "model.pt")
    runtime = TorchScriptRuntime.load(path, declared(SAME_IN_AND_OUT))
    with caplog.at_level(logging.ERROR, LOG), pytest.raises(RuntimeFailure) as caught:
        runtime.infer({"x": np.full((1, 4), 100, np.float32)}, ["x"])
    assert str(caught.value) == "the model failed while running this request; see the server log"
    assert "the model's own check failed" in caplog.text


def test_infer_after_unload_is_a_runtime_failure(files: dict[str, Path]) -> None:
    runtime = TorchScriptRuntime.load(files["mlp.pt"], declared(MLP_CONFIG))
    runtime.unload()
    with pytest.raises(RuntimeFailure, match="unloaded"):
        runtime.infer({"x": rows(1)}, ["y"])


@pytest.mark.parametrize("kind", ["torchscript", "export"])
def test_concurrent_calls_each_get_their_own_answer(
    mlp: TorchScriptRuntime, exported: TorchExportRuntime, kind: str
) -> None:
    runtime, output = (mlp, "y") if kind == "torchscript" else (exported, "output_0")
    inputs = [rows(1 + i % 5, seed=i) for i in range(8)]
    expected = [run(Mlp(), x) for x in inputs]
    failures: list[str] = []
    start = threading.Barrier(len(inputs))

    def call(i: int) -> None:
        start.wait()
        for _ in range(25):
            got = runtime.infer({"x": inputs[i]}, [output])[output]
            if not np.allclose(got, expected[i], rtol=0, atol=1e-6):
                failures.append(f"thread {i} got {got} instead of {expected[i]}")

    threads = [threading.Thread(target=call, args=(i,)) for i in range(len(inputs))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []


def test_intra_op_threads_sets_torch_threads_and_says_so(
    files: dict[str, Path], caplog: pytest.LogCaptureFixture
) -> None:
    before = torch.get_num_threads()
    wanted = 1 if before != 1 else 2
    try:
        with caplog.at_level(logging.INFO, LOG):
            TorchScriptRuntime.load(
                files["mlp.pt"], declared(MLP_CONFIG, intra_op_threads=wanted), "model m version 1"
            )
        assert torch.get_num_threads() == wanted
        assert f"model m version 1: torch.set_num_threads({wanted})" in caplog.text
        assert "process-wide" in caplog.text
    finally:
        torch.set_num_threads(before)


def test_a_cuda_provider_falls_back_to_cpu_with_one_log_line(
    files: dict[str, Path], caplog: pytest.LogCaptureFixture
) -> None:
    options = declared(
        MLP_CONFIG,
        execution_providers=(
            ExecutionProvider("TensorrtExecutionProvider"),
            ExecutionProvider("CUDAExecutionProvider", {"device_id": 0}),
            ExecutionProvider("CPUExecutionProvider"),
        ),
    )
    with caplog.at_level(logging.WARNING, LOG):
        runtime = TorchScriptRuntime.load(files["mlp.pt"], options, "model m version 1")
    assert runtime.device == "cpu"
    fallbacks = [r.getMessage() for r in caplog.records if "running on CPU" in r.getMessage()]
    assert fallbacks == [
        "model m version 1: CUDAExecutionProvider is configured but PyTorch "
        f"{torch.__version__} sees no such CUDA device (torch.cuda.is_available() is False); "
        "running on CPU"
    ]
    assert "TensorrtExecutionProvider has no PyTorch counterpart and is ignored" in caplog.text
    np.testing.assert_array_equal(runtime.infer({"x": rows(2)}, ["y"])["y"], run(Mlp(), rows(2)))


@pytest.mark.parametrize("name", ["model.pt", "model.pt2"])
def test_without_torch_the_load_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    monkeypatch.setitem(sys.modules, "torch", None)
    (tmp_path / name).write_bytes(b"")
    runtime = TorchScriptRuntime if name == "model.pt" else TorchExportRuntime
    with pytest.raises(ModelLoadError) as caught:
        runtime.load(tmp_path / name, declared(MLP_CONFIG))
    assert str(caught.value) == f"{name} needs PyTorch: pip install 'modelport[torch]'"


def test_modelport_imports_without_torch() -> None:
    code = (
        "import sys; sys.modules['torch'] = None; import modelport.app, modelport.runtimes; "
        "print(modelport.runtimes.select_runtime.__name__)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "select_runtime"


def test_a_visible_gpu_is_chosen_by_device_id(caplog: pytest.LogCaptureFixture) -> None:
    two_gpus = SimpleNamespace(
        __version__=torch.__version__,
        cuda=SimpleNamespace(is_available=lambda: True, device_count=lambda: 2),
    )
    cuda = ExecutionProvider("CUDAExecutionProvider", {"device_id": "1"})
    with caplog.at_level(logging.WARNING, LOG):
        assert _choose_device(two_gpus, [cuda], "m") == "cuda:1"
        assert _choose_device(two_gpus, [ExecutionProvider("CPUExecutionProvider"), cuda], "m") == (
            "cpu"
        )
    assert caplog.records == []
    third = ExecutionProvider("CUDAExecutionProvider", {"device_id": 2})
    with caplog.at_level(logging.WARNING, LOG):
        assert _choose_device(two_gpus, [third], "m") == "cpu"
    assert "running on CPU" in caplog.text
    with pytest.raises(ModelLoadError, match="device_id is 'gpu0'; give a GPU number such as 0"):
        _choose_device(
            two_gpus, [ExecutionProvider("CUDAExecutionProvider", {"device_id": "gpu0"})], "m"
        )


# ---- choosing the engine and loading through the loader ---------------------------------------


def test_version_folders_pick_the_pytorch_engines(tmp_path: Path, files: dict[str, Path]) -> None:
    (tmp_path / "1").mkdir()
    (tmp_path / "1" / "model.pt").write_bytes(b"")
    (tmp_path / "2").mkdir()
    (tmp_path / "2" / "traced.pt").write_bytes(b"")
    (tmp_path / "2" / "other.pt2").write_bytes(b"")
    (tmp_path / "3").mkdir()
    (tmp_path / "3" / "model.pt2").write_bytes(b"")
    assert select_runtime(tmp_path / "1", None) == (TorchScriptRuntime, tmp_path / "1" / "model.pt")
    assert select_runtime(tmp_path / "2", None) == (
        TorchScriptRuntime,
        tmp_path / "2" / "traced.pt",
    )
    assert select_runtime(tmp_path / "3", None) == (
        TorchExportRuntime,
        tmp_path / "3" / "model.pt2",
    )
    assert TorchExportRuntime.find_model_file(tmp_path / "2", None) == tmp_path / "2" / "other.pt2"
    assert TorchScriptRuntime.find_model_file(tmp_path / "3", None) is None


def test_a_named_model_file_goes_to_the_engine_of_its_suffix(tmp_path: Path) -> None:
    folder = tmp_path / "1"
    folder.mkdir()
    for name in ("traced.pt", "exported.pt2", "booster.txt", "graph.bin"):
        (folder / name).write_bytes(b"")
    assert select_runtime(folder, "traced.pt") == (TorchScriptRuntime, folder / "traced.pt")
    assert select_runtime(folder, "exported.pt2") == (TorchExportRuntime, folder / "exported.pt2")
    assert select_runtime(folder, "booster.txt") == (SklearnRuntime, folder / "booster.txt")
    # onnxruntime takes an ONNX model under any other name
    assert select_runtime(folder, "graph.bin") == (OnnxRuntime, folder / "graph.bin")
    assert select_runtime(folder, "missing.onnx") is None


def test_the_loader_hands_config_yaml_declarations_to_torchscript(
    files: dict[str, Path],
) -> None:
    folder = VersionFolder(1, files["pair.pt"].parent, fingerprint(files["pair.pt"].parent))
    loaded = load_version(folder, ModelConfig.model_validate(PAIR_CONFIG), "model pair version 1")
    try:
        assert isinstance(loaded.runtime, TorchScriptRuntime)
        assert loaded.signature.output_names == ("sum", "product")
    finally:
        loaded.runtime.unload()
    with pytest.raises(
        ModelLoadError, match=re.escape("config.yaml must declare inputs and outputs")
    ):
        load_version(folder, ModelConfig(), "model pair version 1")
