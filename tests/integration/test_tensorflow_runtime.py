"""TensorFlow SavedModels served by ``modelport serve`` running under .venv-tf (``make tools``).

TensorFlow needs protobuf 7, which .venv's test clients cannot take, so the SavedModel is built
and the server runs under .venv-tf; the test process calls the server over TF Serving REST, V2
REST and V2 gRPC (tritonclient) and compares its answers with TensorFlow's own, which the build
script computed on the same inputs.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import tritonclient.grpc as grpcclient

from tests.integration.test_tfserving_grpc import client as tf_client
from tests.server import ServerProcess

ROOT = Path(__file__).resolve().parents[2]
TF_PYTHON = ROOT / ".venv-tf" / "bin" / "python"

pytestmark = pytest.mark.slow

#: A tf.Module with a dynamic batch, three inputs of different dtypes (FP32, INT64, string) and
#: a second signature; argv: the version folder and a JSON file for TensorFlow's own answers.
BUILD = """
import json
import sys

import numpy as np
import tensorflow as tf


class Tagger(tf.Module):
    def __init__(self):
        super().__init__()
        rng = np.random.default_rng(0)
        self.w = tf.Variable(rng.standard_normal((4, 3)).astype(np.float32))
        self.offsets = tf.Variable(np.array([1, 10, 100], dtype=np.int64))

    @tf.function(
        input_signature=[
            tf.TensorSpec([None, 4], tf.float32, name="features"),
            tf.TensorSpec([None], tf.int64, name="shift"),
            tf.TensorSpec([None], tf.string, name="tag"),
        ]
    )
    def serve(self, features, shift, tag):
        return {
            "scores": tf.matmul(features, self.w),
            "shifted": tf.expand_dims(shift, 1) + self.offsets,
            "label": tf.strings.join([tag, tf.constant("!")]),
        }

    @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32, name="features")])
    def total(self, features):
        return {"total": tf.reduce_sum(features, axis=1)}

    @tf.function(input_signature=[tf.TensorSpec(None, tf.float32, name="anything")])
    def unranked(self, anything):
        return {"same": anything}


folder, answers = sys.argv[1], sys.argv[2]
model = Tagger()
tf.saved_model.save(
    model,
    folder,
    signatures={
        "serving_default": model.serve,
        "total": model.total,
        "unranked": model.unranked,
    },
)
features = np.random.default_rng(1).standard_normal((3, 4)).astype(np.float32)
shift = np.array([1, 2, 3], dtype=np.int64)
tag = ["a", "bc", "\\u00e9t\\u00e9"]
out = model.serve(tf.constant(features), tf.constant(shift), tf.constant(tag))
with open(answers, "w") as f:
    json.dump(
        {
            "features": features.tolist(),
            "shift": shift.tolist(),
            "tag": tag,
            "scores": out["scores"].numpy().tolist(),
            "shifted": out["shifted"].numpy().tolist(),
            "label": [v.decode() for v in out["label"].numpy()],
            "total": model.total(tf.constant(features))["total"].numpy().tolist(),
        },
        f,
    )
"""

CONFIG = """\
runtime:
  intra_op_threads: 2
  inter_op_threads: 1
"""


def tf_env() -> dict[str, str]:
    if not TF_PYTHON.exists():
        pytest.fail(
            f"{TF_PYTHON} does not exist; run `make tools` to build .venv-tf (TensorFlow and "
            "the server's dependencies), then run these tests again",
            pytrace=False,
        )
    return {
        "PYTHONPATH": str(ROOT / "src"),
        "TF_CPP_MIN_LOG_LEVEL": "3",
        "TF_ENABLE_ONEDNN_OPTS": "0",
    }


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """A repository with the SavedModel as ``tagger/1``, and TensorFlow's answers."""
    root = tmp_path_factory.mktemp("tensorflow")
    repository, answers = root / "models", root / "answers.json"
    (repository / "tagger").mkdir(parents=True)
    (repository / "tagger" / "config.yaml").write_text(CONFIG)
    done = subprocess.run(
        [str(TF_PYTHON), "-c", BUILD, str(repository / "tagger" / "1"), str(answers)],
        cwd=ROOT,
        env={**os.environ, **tf_env()},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return repository, json.loads(answers.read_text())


@pytest.fixture(scope="module")
def server(
    built: tuple[Path, dict[str, Any]], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    repository, _ = built
    log = tmp_path_factory.mktemp("tensorflow-server") / "server.log"
    process = ServerProcess(
        ["--model-repository", str(repository)], log, env=tf_env(), python=TF_PYTHON
    )
    try:
        process.wait_ready(timeout=180)
        yield process
    finally:
        process.stop()


def check_answers(got: dict[str, Any], expected: dict[str, Any]) -> None:
    np.testing.assert_allclose(
        np.asarray(got["scores"], dtype=np.float32), expected["scores"], rtol=1e-6, atol=1e-6
    )
    np.testing.assert_array_equal(np.asarray(got["shifted"], dtype=np.int64), expected["shifted"])
    assert [v.decode() if isinstance(v, bytes) else v for v in got["label"]] == expected["label"]


def test_tf_serving_rest_predict_answers_what_tensorflow_answers(
    server: ServerProcess, built: tuple[Path, dict[str, Any]]
) -> None:
    _, expected = built
    inputs = {name: expected[name] for name in ("features", "shift", "tag")}
    for doc in (
        {"inputs": inputs},
        {"signature_name": "serving_default", "inputs": inputs},
        {
            "instances": [
                dict(zip(inputs, row, strict=True)) for row in zip(*inputs.values(), strict=True)
            ]
        },
    ):
        answer = httpx.post(f"{server.url}/v1/models/tagger:predict", json=doc, timeout=30)
        assert answer.status_code == 200, answer.text
        body = answer.json()
        got = (
            body["outputs"]
            if "outputs" in body
            else {
                name: [row[name] for row in body["predictions"]] for name in body["predictions"][0]
            }
        )
        check_answers(got, expected)


def test_tf_serving_rest_runs_the_signature_a_request_names(
    server: ServerProcess, built: tuple[Path, dict[str, Any]]
) -> None:
    _, expected = built
    url = f"{server.url}/v1/models/tagger:predict"
    columns = {"signature_name": "total", "inputs": {"features": expected["features"]}}
    answer = httpx.post(url, json=columns, timeout=30)
    assert answer.status_code == 200, answer.text
    np.testing.assert_allclose(answer.json()["outputs"], expected["total"], rtol=1e-6)
    rows = {"signature_name": "total", "instances": expected["features"]}
    answer = httpx.post(url, json=rows, timeout=30)
    assert answer.status_code == 200, answer.text
    np.testing.assert_allclose(answer.json()["predictions"], expected["total"], rtol=1e-6)


def test_an_unknown_or_unservable_signature_is_refused_naming_the_served_ones(
    server: ServerProcess, built: tuple[Path, dict[str, Any]]
) -> None:
    _, expected = built
    for name in ("other", "unranked"):
        doc = {"signature_name": name, "inputs": {"features": expected["features"]}}
        answer = httpx.post(f"{server.url}/v1/models/tagger:predict", json=doc, timeout=30)
        assert answer.status_code == 400
        message = answer.json()["error"]
        assert f'Serving signature name: "{name}" not found in signature def.' in message
        assert 'has the signatures "serving_default", "total"' in message
    assert "signature 'unranked' is not served: input 'anything'" in server.log()


def test_tf_serving_grpc_client_runs_named_signatures_and_lists_them(
    server: ServerProcess, built: tuple[Path, dict[str, Any]]
) -> None:
    _, expected = built
    request = {
        "model": "tagger",
        "inputs": {"features": expected["features"]},
        "signatures": ["total", "other"],
    }
    answers = tf_client(server, "signatures", json.dumps(request))
    np.testing.assert_allclose(answers["total"]["outputs"]["total"], expected["total"], rtol=1e-6)
    assert answers["total"]["model_spec"]["signature_name"] == "total"
    assert answers["other"]["code"] == "FAILED_PRECONDITION"
    assert 'Serving signature key "other" not found.' in answers["other"]["details"]
    metadata = answers["metadata"]
    assert sorted(metadata) == ["serving_default", "total"]
    assert metadata["total"]["inputs"]["features"]["shape"] == [-1, 4]
    assert metadata["total"]["outputs"]["total"]["dtype"] == "float32"


def test_metadata_gives_the_savedmodel_signature(server: ServerProcess) -> None:
    answer = httpx.get(f"{server.url}/v1/models/tagger/metadata", timeout=30)
    assert answer.status_code == 200, answer.text
    defs = answer.json()["metadata"]["signature_def"]["signature_def"]
    assert list(defs) == ["serving_default", "total"]
    assert list(defs["total"]["outputs"]) == ["total"]
    inputs, outputs = defs["serving_default"]["inputs"], defs["serving_default"]["outputs"]
    assert {name: spec["dtype"] for name, spec in inputs.items()} == {
        "features": "DT_FLOAT",
        "shift": "DT_INT64",
        "tag": "DT_STRING",
    }
    dims = [int(d["size"]) for d in inputs["features"]["tensor_shape"]["dim"]]
    assert dims == [-1, 4]
    assert {name: spec["dtype"] for name, spec in outputs.items()} == {
        "scores": "DT_FLOAT",
        "shifted": "DT_INT64",
        "label": "DT_STRING",
    }

    v2 = httpx.get(f"{server.url}/v2/models/tagger", timeout=30).json()
    assert v2["platform"] == "tensorflow_savedmodel"
    assert {t["name"]: (t["datatype"], t["shape"]) for t in v2["inputs"]} == {
        "features": ("FP32", [-1, 4]),
        "shift": ("INT64", [-1]),
        "tag": ("BYTES", [-1]),
    }
    config = httpx.get(f"{server.url}/v2/models/tagger/config", timeout=30).json()
    assert config["backend"] == "tensorflow"


def test_v2_rest_infer_answers_what_tensorflow_answers(
    server: ServerProcess, built: tuple[Path, dict[str, Any]]
) -> None:
    _, expected = built
    body = {
        "inputs": [
            {
                "name": "features",
                "shape": [3, 4],
                "datatype": "FP32",
                "data": np.ravel(expected["features"]).tolist(),
            },
            {"name": "shift", "shape": [3], "datatype": "INT64", "data": expected["shift"]},
            {"name": "tag", "shape": [3], "datatype": "BYTES", "data": expected["tag"]},
        ]
    }
    answer = httpx.post(f"{server.url}/v2/models/tagger/infer", json=body, timeout=30)
    assert answer.status_code == 200, answer.text
    outputs = {o["name"]: o for o in answer.json()["outputs"]}
    assert outputs["scores"]["shape"] == [3, 3]
    check_answers(
        {
            "scores": np.reshape(outputs["scores"]["data"], (3, 3)),
            "shifted": np.reshape(outputs["shifted"]["data"], (3, 3)),
            "label": outputs["label"]["data"],
        },
        expected,
    )


def test_v2_grpc_infer_answers_what_tensorflow_answers(
    server: ServerProcess, built: tuple[Path, dict[str, Any]]
) -> None:
    _, expected = built
    features = np.asarray(expected["features"], dtype=np.float32)
    shift = np.asarray(expected["shift"], dtype=np.int64)
    tag = np.array([t.encode() for t in expected["tag"]], dtype=np.object_)
    inputs = []
    for name, arr, datatype in (
        ("features", features, "FP32"),
        ("shift", shift, "INT64"),
        ("tag", tag, "BYTES"),
    ):
        tensor = grpcclient.InferInput(name, list(arr.shape), datatype)
        tensor.set_data_from_numpy(arr)
        inputs.append(tensor)
    client = grpcclient.InferenceServerClient(server.grpc_target)
    try:
        result = client.infer("tagger", inputs)
        check_answers(
            {name: result.as_numpy(name) for name in ("scores", "shifted", "label")}, expected
        )
    finally:
        client.close()


def test_thread_settings_are_applied_process_wide_with_a_log_line(server: ServerProcess) -> None:
    log = server.log()
    assert "TensorFlow intra-op threads set to 2 for the whole process" in log
    assert "TensorFlow inter-op threads set to 1 for the whole process" in log


#: Loads the SavedModel twice in one process with different thread counts; prints the log.
LOAD_TWICE = """
import logging
import sys
from pathlib import Path

import numpy as np

from modelport.runtimes import RuntimeOptions
from modelport.runtimes.tensorflow import TensorFlowRuntime

logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(message)s")
path = Path(sys.argv[1]) / "saved_model.pb"
first = TensorFlowRuntime.load(path, RuntimeOptions(intra_op_threads=2), "first")
features, shift = np.zeros((1, 4), np.float32), np.zeros(1, np.int64)
first.infer({"features": features, "shift": shift, "tag": np.array([b""], object)}, ["scores"])
TensorFlowRuntime.load(path, RuntimeOptions(intra_op_threads=3), "second")
"""


def test_a_later_model_asking_for_other_thread_counts_is_told_they_were_not_applied(
    built: tuple[Path, dict[str, Any]],
) -> None:
    repository, _ = built
    done = subprocess.run(
        [str(TF_PYTHON), "-c", LOAD_TWICE, str(repository / "tagger" / "1")],
        cwd=ROOT,
        env={**os.environ, **tf_env()},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "first: TensorFlow intra-op threads set to 2 for the whole process" in done.stdout
    assert (
        "second: runtime.intra_op_threads=3 not applied: TensorFlow's thread pools are "
        "process-wide and already running with 2 threads" in done.stdout
    )
