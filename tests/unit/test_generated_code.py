"""The committed protobuf code matches protos/*.proto, and the example models build the same."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_generated_protobuf_code_is_fresh() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_protos.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_example_models_build_deterministically(tmp_path: Path) -> None:
    digests = []
    for run in ("a", "b"):
        subprocess.run(
            [sys.executable, str(ROOT / "examples" / "build_models.py"), str(tmp_path / run)],
            check=True,
            capture_output=True,
        )
        files = sorted((tmp_path / run).rglob("model.onnx"))
        assert [str(f.relative_to(tmp_path / run)) for f in files] == [
            "mnist/1/model.onnx",
            "mnist/2/model.onnx",
            "tabular/1/model.onnx",
        ]
        digests.append([hashlib.sha256(f.read_bytes()).hexdigest() for f in files])
    assert digests[0] == digests[1]
    assert digests[0][0] != digests[0][1], "mnist versions 1 and 2 differ"
