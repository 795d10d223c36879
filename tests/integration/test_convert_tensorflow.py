"""``modelport convert`` on a TensorFlow SavedModel, run under .venv-tf (``make tools``), where
TensorFlow and tf2onnx live: TensorFlow needs protobuf 7, which .venv's test clients cannot take.

The SavedModel is built there too; the ONNX result is then checked here, in .venv's
onnxruntime, against the answers TensorFlow gave, and served by a real server.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import httpx
import numpy as np
import onnxruntime as ort
import pytest

from tests.conftest import StartServer

ROOT = Path(__file__).resolve().parents[2]
TF_PYTHON = ROOT / ".venv-tf" / "bin" / "python"

pytestmark = pytest.mark.slow

BUILD = """
import sys

import numpy as np
import tensorflow as tf


class Scorer(tf.Module):
    def __init__(self):
        super().__init__()
        rng = np.random.default_rng(0)
        self.w = tf.Variable(rng.standard_normal((16, 4)).astype(np.float32) / 4)
        self.b = tf.Variable(np.linspace(-1, 1, 4).astype(np.float32))

    @tf.function(input_signature=[tf.TensorSpec([None, 16], tf.float32, name="features")])
    def serve(self, features):
        scores = tf.matmul(features, self.w) + self.b
        return {"scores": scores, "best": tf.argmax(scores, axis=1)}


folder, sample = sys.argv[1], sys.argv[2]
model = Scorer()
tf.saved_model.save(model, folder, signatures={"serving_default": model.serve})
x = np.random.default_rng(1).standard_normal((5, 16)).astype(np.float32)
answer = model.serve(tf.constant(x))
np.savez(sample, features=x, scores=answer["scores"].numpy(), best=answer["best"].numpy())
"""


def run_tf(*args: str | Path) -> subprocess.CompletedProcess[str]:
    if not TF_PYTHON.exists():
        pytest.fail(
            f"{TF_PYTHON} does not exist; run `make tools` to build .venv-tf (TensorFlow and "
            "tf2onnx), then run these tests again",
            pytrace=False,
        )
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT / "src"),
        "TF_CPP_MIN_LOG_LEVEL": "3",
        "TF_ENABLE_ONEDNN_OPTS": "0",
    }
    return subprocess.run(
        [str(TF_PYTHON), *map(str, args)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def test_a_savedmodel_converts_and_serves_what_tensorflow_answers(
    tmp_path: Path, start_server: StartServer
) -> None:
    saved, answers = tmp_path / "saved_model", tmp_path / "answers.npz"
    built = run_tf("-c", BUILD, saved, answers)
    assert built.returncode == 0, built.stderr
    repository = tmp_path / "models"
    out = repository / "scorer" / "1"
    done = run_tf("-m", "modelport", "convert", saved, "--output", out, "--latency-runs", "3")
    assert done.returncode == 0, done.stdout + done.stderr

    report = json.loads((out / "report.json").read_text())
    assert report["passed"] is True
    assert report["details"]["converter"] == "tf2onnx"
    assert report["details"]["signature"] == "serving_default"
    assert report["source"]["label"] == "SavedModel saved_model"
    assert {i["name"] for i in report["result"]["inputs"]} == {"features"}
    assert {o["name"] for o in report["outputs"]} == {"scores", "best"}
    assert "tf2onnx" in report["versions"]

    expected = np.load(answers)
    session = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    got = dict(zip(names, session.run(None, {"features": expected["features"]}), strict=True))
    np.testing.assert_allclose(got["scores"], expected["scores"], atol=1e-5, rtol=1e-4)
    np.testing.assert_array_equal(got["best"], expected["best"])

    server = start_server("--model-repository", str(repository))
    body = {
        "inputs": [
            {
                "name": "features",
                "shape": [5, 16],
                "datatype": "FP32",
                "data": expected["features"].ravel().tolist(),
            }
        ]
    }
    answer = httpx.post(f"{server.url}/v2/models/scorer/infer", json=body)
    assert answer.status_code == 200, answer.text
    outputs = {o["name"]: o for o in answer.json()["outputs"]}
    np.testing.assert_allclose(
        np.array(outputs["scores"]["data"], np.float32).reshape(5, 4),
        expected["scores"],
        atol=1e-5,
        rtol=1e-4,
    )
    assert outputs["best"]["data"] == expected["best"].tolist()
