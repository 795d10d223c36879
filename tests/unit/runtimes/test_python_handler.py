"""Custom Python handlers (``model.py``, TorchServe's contract), loaded from real files."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from modelport.core.dispatch import ComputeEstimate, Dispatcher
from modelport.errors import ModelLoadError, RuntimeFailure
from modelport.lifecycle.loader import load_version
from modelport.lifecycle.repository import VersionFolder, fingerprint
from modelport.model_config import ModelConfig, TensorOverride
from modelport.runtimes import select_runtime
from modelport.runtimes.base import RuntimeOptions
from modelport.runtimes.onnx import OnnxRuntime
from modelport.runtimes.python_handler import PythonHandlerRuntime
from modelport.types import Datatype
from tests.handler_models import (
    FAILING_INITIALIZE,
    NO_HANDLER,
    STAGED_CONFIG,
    STAGED_HANDLER,
    TEXT_HANDLER,
    TORCH_HANDLER,
    TWO_HANDLERS,
    WORDS_HANDLER,
    WORDS_HELPERS,
    WRONG_COUNT,
    stats,
    text_rows,
    write_handler,
)
from tests.models import save, token_sum_model
from tests.torch_models import Mlp, rows, run, save_torchscript

pytestmark = pytest.mark.filterwarnings("ignore:`torch\\.jit\\.:DeprecationWarning")


def options(config: dict[str, Any] | None = None, **extra: Any) -> RuntimeOptions:
    """RuntimeOptions with ``config``'s inputs and outputs, as the loader builds them."""
    config = config or {}
    return RuntimeOptions(
        declared_inputs=tuple(TensorOverride.model_validate(t) for t in config.get("inputs", [])),
        declared_outputs=tuple(TensorOverride.model_validate(t) for t in config.get("outputs", [])),
        **extra,
    )


@pytest.fixture
def loaded() -> Iterator[list[PythonHandlerRuntime]]:
    """Runtimes to unload after the test, so sys.path is left as it was."""
    runtimes: list[PythonHandlerRuntime] = []
    yield runtimes
    for runtime in runtimes:
        runtime.unload()


def load(
    path: Path, keep: list[PythonHandlerRuntime], opts: RuntimeOptions | None = None
) -> PythonHandlerRuntime:
    runtime = PythonHandlerRuntime.load(path, opts or options(), "test version 1")
    keep.append(runtime)
    return runtime


# ---- a class with handle() -------------------------------------------------------------------


def test_a_handle_class_gets_one_request_per_row(
    tmp_path: Path, loaded: list[PythonHandlerRuntime]
) -> None:
    path = write_handler(tmp_path / "text" / "1", TEXT_HANDLER)
    runtime = load(path, loaded)
    assert runtime.platform == "python"
    assert runtime.signature.input_names == ("data",)
    assert runtime.signature.output_names == ("output",)
    assert runtime.signature.outputs[0].datatype is Datatype.BYTES
    result = runtime.infer({"data": text_rows("hello world", "abc")}, ["output"])
    assert result["output"].tolist() == [b"HELLO WORLD", b"ABC"]


def test_the_context_names_the_folder_and_the_manifest(
    tmp_path: Path, loaded: list[PythonHandlerRuntime]
) -> None:
    path = write_handler(tmp_path / "text" / "3", TEXT_HANDLER)
    runtime = load(path, loaded)
    context = runtime._context
    assert context.system_properties["model_dir"] == str(path.parent)
    assert context.system_properties["gpu_id"] is None
    assert context.system_properties["server_name"] == "modelport"
    assert context.manifest == {
        "model": {"modelName": "text", "handler": "model.py", "modelVersion": "3"}
    }
    assert type(context).__module__ == "ts.context"  # TorchServe's own, as it is installed


# ---- a module-level handle() and sibling imports ---------------------------------------------


def test_a_handle_function_imports_files_beside_it(
    tmp_path: Path, loaded: list[PythonHandlerRuntime]
) -> None:
    version = tmp_path / "words" / "1"
    path = write_handler(version, WORDS_HANDLER, extra={"helpers.py": WORDS_HELPERS})
    runtime = load(path, loaded)
    assert str(version) in sys.path
    result = runtime.infer({"data": text_rows("one two three", "four")}, ["output"])
    answers = [json.loads(item) for item in result["output"]]
    assert answers == [{"words": 3, "kind": "bytes"}, {"words": 1, "kind": "bytes"}]
    runtime.unload()
    assert str(version) not in sys.path


# ---- preprocess / inference / postprocess ----------------------------------------------------


def test_stages_fill_a_declared_numeric_output(
    tmp_path: Path, loaded: list[PythonHandlerRuntime]
) -> None:
    path = write_handler(tmp_path / "stats" / "1", STAGED_HANDLER)
    runtime = load(path, loaded, options(STAGED_CONFIG))
    assert runtime.signature.input_names == ("data",)
    assert runtime.signature.outputs[0].datatype is Datatype.FP32
    result = runtime.infer({"data": text_rows("banana", "sky", "queue")}, ["stats"])
    assert result["stats"].dtype == np.float32
    np.testing.assert_array_equal(result["stats"], [stats("banana"), stats("sky"), stats("queue")])


def test_results_of_the_wrong_shape_are_named(
    tmp_path: Path, loaded: list[PythonHandlerRuntime]
) -> None:
    config = {"outputs": [{"name": "stats", "datatype": "FP32", "shape": [-1, 3]}]}
    path = write_handler(tmp_path / "stats" / "1", STAGED_HANDLER)
    runtime = load(path, loaded, options(config))
    with pytest.raises(RuntimeFailure, match=r"shape \[1, 2\].*declares \[-1, 3\]"):
        runtime.infer({"data": text_rows("banana")}, ["stats"])


# ---- a BaseHandler subclass ------------------------------------------------------------------


def test_a_base_handler_subclass_runs_its_torchscript_model(
    tmp_path: Path, loaded: list[PythonHandlerRuntime]
) -> None:
    version = tmp_path / "rows" / "1"
    save_torchscript(Mlp(), version / "model.pt")
    path = write_handler(version, TORCH_HANDLER)
    config = {"outputs": [{"name": "scores", "datatype": "FP32", "shape": [-1, 3]}]}
    runtime = load(path, loaded, options(config))
    x = rows(2)
    requests = np.empty(2, dtype=object)
    requests[:] = [json.dumps(row.tolist()).encode() for row in x]
    result = runtime.infer({"data": requests}, ["scores"])
    np.testing.assert_allclose(result["scores"], run(Mlp(), x), rtol=0, atol=1e-6)


# ---- choosing the handler --------------------------------------------------------------------


def test_a_handler_file_wins_over_other_model_files(tmp_path: Path) -> None:
    version = tmp_path / "m" / "1"
    write_handler(version, TEXT_HANDLER)
    save(token_sum_model(), version / "model.onnx")
    (version / "weights.pkl").write_bytes(b"\x80\x04N.")
    assert select_runtime(version, None) == (PythonHandlerRuntime, version / "model.py")
    write_handler(version, TEXT_HANDLER, filename="serve.py")
    assert select_runtime(version, "serve.py") == (PythonHandlerRuntime, version / "serve.py")
    assert select_runtime(version, "model.onnx") == (OnnxRuntime, version / "model.onnx")


def test_config_names_one_of_several_classes(
    tmp_path: Path, loaded: list[PythonHandlerRuntime]
) -> None:
    path = write_handler(tmp_path / "two" / "1", TWO_HANDLERS)
    with pytest.raises(ModelLoadError, match=r"several handler classes \(First, Second\)"):
        load(path, loaded)
    runtime = load(path, loaded, options(handler="Second"))
    assert runtime.infer({"data": text_rows("x")}, ["output"])["output"].tolist() == [b"second"]
    with pytest.raises(ModelLoadError, match=r"names the handler 'Third'.*First, Second"):
        load(path, loaded, options(handler="Third"))


def test_a_file_without_a_handler_is_refused(tmp_path: Path) -> None:
    path = write_handler(tmp_path / "none" / "1", NO_HANDLER)
    with pytest.raises(ModelLoadError, match=r"model\.py has no handler: define a class"):
        PythonHandlerRuntime.load(path, options())
    assert str(path.parent) not in sys.path


def test_a_failing_initialize_is_reported_with_its_message(tmp_path: Path) -> None:
    path = write_handler(tmp_path / "broken" / "1", FAILING_INITIALIZE)
    with pytest.raises(ModelLoadError) as caught:
        PythonHandlerRuntime.load(path, options())
    message = str(caught.value)
    assert "Broken.initialize(context) raised FileNotFoundError" in message
    assert "weights.bin is missing from the model folder" in message
    assert str(path.parent) not in sys.path


def test_an_import_error_is_reported(tmp_path: Path) -> None:
    path = write_handler(tmp_path / "bad" / "1", "import not_a_module_anywhere\n")
    with pytest.raises(ModelLoadError, match=r"importing the handler model\.py failed.*not_a_mod"):
        PythonHandlerRuntime.load(path, options())


def test_a_wrong_result_count_is_a_runtime_failure(
    tmp_path: Path, loaded: list[PythonHandlerRuntime]
) -> None:
    path = write_handler(tmp_path / "short" / "1", WRONG_COUNT)
    runtime = load(path, loaded)
    with pytest.raises(RuntimeFailure, match="returned 2 results for 3 requests"):
        runtime.infer({"data": text_rows("a", "b", "c")}, ["output"])


def test_the_loader_serves_a_handler_version(tmp_path: Path) -> None:
    version = tmp_path / "text" / "1"
    write_handler(version, TEXT_HANDLER)
    folder = VersionFolder(1, version, fingerprint(version))
    loaded = load_version(folder, ModelConfig(), "text version 1")
    try:
        assert loaded.runtime.platform == "python"
        out = loaded.runtime.infer({"data": text_rows("ok")}, ["output"])
        assert out["output"].tolist() == [b"OK"]
    finally:
        loaded.runtime.unload()


def test_handlers_never_run_inline(tmp_path: Path, loaded: list[PythonHandlerRuntime]) -> None:
    path = write_handler(tmp_path / "text" / "1", TEXT_HANDLER)
    runtime = load(path, loaded)
    estimate = ComputeEstimate()
    estimate.seconds_per_byte = 1e-12  # measured as tiny: any other engine would run inline
    threads: list[str] = []

    class Recording(ThreadPoolExecutor):
        def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Any:
            threads.append("pool")
            return super().submit(fn, *args, **kwargs)

    async def call() -> dict[str, Any]:
        with Recording(1) as pool:
            dispatcher = Dispatcher(pool, inline_budget_s=1.0)
            return await dispatcher.run(runtime, estimate, {"data": text_rows("x")}, ["output"])

    assert asyncio.run(call())["output"].tolist() == [b"X"]
    assert threads == ["pool"]


def test_results_that_are_not_json_are_named(
    tmp_path: Path, loaded: list[PythonHandlerRuntime]
) -> None:
    source = (
        "class H:\n    def handle(self, data, context):\n        return [object() for _ in data]\n"
    )
    runtime = load(write_handler(tmp_path / "obj" / "1", source), loaded)
    with pytest.raises(RuntimeFailure, match="cannot be written as JSON"):
        runtime.infer({"data": text_rows("a")}, ["output"])


def test_torch_tensors_in_results_are_written_as_json(
    tmp_path: Path, loaded: list[PythonHandlerRuntime]
) -> None:
    source = (
        "import torch\n\nclass H:\n    def handle(self, data, context):\n"
        "        return [{'v': torch.tensor([1.5, 2.0])} for _ in data]\n"
    )
    runtime = load(write_handler(tmp_path / "tt" / "1", source), loaded)
    out = runtime.infer({"data": text_rows("a")}, ["output"])
    assert json.loads(out["output"][0]) == {"v": [1.5, 2.0]}
    assert torch.tensor([1.0]).tolist() == [1.0]


def test_numeric_inputs_and_several_outputs(
    tmp_path: Path, loaded: list[PythonHandlerRuntime]
) -> None:
    source = (
        "class H:\n    def handle(self, data, context):\n"
        "        return [{'total': float(r['x'].sum()), 'label': 'big' if r['x'].sum() > 0 "
        "else 'small'} for r in data]\n"
    )
    config = {
        "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 4]}],
        "outputs": [
            {"name": "total", "datatype": "FP64", "shape": [-1]},
            {"name": "label", "datatype": "BYTES", "shape": [-1]},
        ],
    }
    runtime = load(write_handler(tmp_path / "two" / "1", source), loaded, options(config))
    x = np.array([[1, 2, 3, 4], [-1, -1, 0, 0]], dtype=np.float32)
    out = runtime.infer({"x": x}, ["total", "label"])
    np.testing.assert_array_equal(out["total"], [10.0, -2.0])
    assert out["label"].tolist() == [b"big", b"small"]


def test_several_outputs_need_dict_results(
    tmp_path: Path, loaded: list[PythonHandlerRuntime]
) -> None:
    config = {
        "outputs": [
            {"name": "a", "datatype": "BYTES", "shape": [-1]},
            {"name": "b", "datatype": "BYTES", "shape": [-1]},
        ]
    }
    runtime = load(write_handler(tmp_path / "t" / "1", TEXT_HANDLER), loaded, options(config))
    with pytest.raises(RuntimeFailure, match="each result must be a dict with the keys a, b"):
        runtime.infer({"data": text_rows("x")}, ["a", "b"])
