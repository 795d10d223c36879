"""TorchServe ``.mar`` archives built by the real torch-model-archiver, run by their own handler."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from modelport.errors import ModelLoadError
from modelport.lifecycle.loader import load_version
from modelport.lifecycle.repository import VersionFolder, fingerprint
from modelport.model_config import ModelConfig, TensorOverride
from modelport.runtimes import select_runtime
from modelport.runtimes.base import RuntimeOptions
from modelport.runtimes.torchserve_mar import TorchServeArchiveRuntime
from tests.handler_models import TEXT_HANDLER, build_mar, write_handler, write_zip_slip_mar
from tests.torch_models import Mlp, rows, run, save_torchscript

pytestmark = pytest.mark.filterwarnings("ignore:`torch\\.jit\\.:DeprecationWarning")

SCORES = {"name": "scores", "datatype": "FP32", "shape": [-1, 3]}


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("mar")
    weights = save_torchscript(Mlp(), work / "src" / "model.pt")
    return build_mar(work / "src", weights, "tiny", work / "built")


def json_rows(x: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    requests = np.empty(len(x), dtype=object)
    requests[:] = [json.dumps(row.tolist()).encode() for row in x]
    return requests


def test_an_archive_runs_its_base_handler_on_its_serialized_file(
    archive: Path, tmp_path: Path
) -> None:
    version = tmp_path / "tiny" / "1"
    version.mkdir(parents=True)
    (version / "tiny.mar").write_bytes(archive.read_bytes())
    assert select_runtime(version, None) == (TorchServeArchiveRuntime, version / "tiny.mar")
    options = RuntimeOptions(declared_outputs=(TensorOverride.model_validate(SCORES),))
    runtime = TorchServeArchiveRuntime.load(version / "tiny.mar", options, "tiny version 1")
    model_dir = Path(runtime._context.system_properties["model_dir"])
    try:
        assert runtime.platform == "torchserve"
        assert not model_dir.is_relative_to(tmp_path)  # extracted outside the repository
        assert (model_dir / "model.pt").is_file()
        manifest = runtime._context.manifest
        assert manifest["model"]["serializedFile"] == "model.pt"
        assert manifest["model"]["handler"] == "handler.py"
        x = rows(3)
        out = runtime.infer({"data": json_rows(x)}, ["scores"])
        np.testing.assert_allclose(out["scores"], run(Mlp(), x), rtol=0, atol=1e-6)
    finally:
        runtime.unload()
    assert not model_dir.exists()
    assert sorted(p.name for p in version.iterdir()) == ["tiny.mar"]


def test_a_handler_file_beside_an_archive_wins(archive: Path, tmp_path: Path) -> None:
    version = tmp_path / "m" / "1"
    write_handler(version, TEXT_HANDLER)
    (version / "tiny.mar").write_bytes(archive.read_bytes())
    assert select_runtime(version, None) is not None
    assert select_runtime(version, None)[0].platform == "python"  # type: ignore[index]
    assert select_runtime(version, "tiny.mar") == (TorchServeArchiveRuntime, version / "tiny.mar")


def test_a_zip_slip_archive_is_refused_and_leaves_nothing(tmp_path: Path) -> None:
    version = tmp_path / "evil" / "1"
    mar = write_zip_slip_mar(version / "evil.mar")
    before = set(tmp_path.iterdir())
    scratch = Path(tempfile.gettempdir())
    with pytest.raises(ModelLoadError, match=r"evil\.mar.*\.\./escaped\.py"):
        TorchServeArchiveRuntime.load(mar, RuntimeOptions())
    assert set(tmp_path.iterdir()) == before
    assert not list(scratch.glob("modelport-evil-1-*"))  # the temporary folder is gone
    assert not (tmp_path / "evil" / "escaped.py").exists()


def test_config_archive_limits_reach_the_extraction(archive: Path, tmp_path: Path) -> None:
    version = tmp_path / "tiny" / "1"
    version.mkdir(parents=True)
    (version / "tiny.mar").write_bytes(archive.read_bytes())
    config = ModelConfig.model_validate({"outputs": [SCORES], "archive": {"max_entries": 2}})
    with pytest.raises(ModelLoadError, match="max_entries"):
        load_version(VersionFolder(1, version, fingerprint(version)), config, "tiny version 1")
    loaded = load_version(
        VersionFolder(1, version, fingerprint(version)),
        ModelConfig.model_validate({"outputs": [SCORES]}),
        "tiny version 1",
    )
    try:
        assert loaded.signature.output_names == ("scores",)
    finally:
        loaded.runtime.unload()
