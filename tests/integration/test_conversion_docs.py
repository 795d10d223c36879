"""docs/conversion.md's commands run as written, one block after another, in a fresh folder."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[2] / "docs" / "conversion.md"
BASH = re.compile(r"^```bash\n(.*?)^```", re.MULTILINE | re.DOTALL)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


def test_the_conversion_guide_runs_as_written(tmp_path: Path) -> None:
    blocks = BASH.findall(DOC.read_text())
    assert len(blocks) >= 6
    (tmp_path / ".venv").symlink_to(Path(sys.prefix))  # the commands use .venv/bin/...
    for block in blocks:
        done = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", block],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        assert done.returncode == 0, f"{block}\n{done.stdout}\n{done.stderr}"
    models = tmp_path / "models"
    for version in ("mlp/1", "mlp/2", "mlp/3", "mlp/4", "mlp/5", "mlp/6", "churn/1", "churn/2"):
        assert sorted(p.name for p in (models / version).iterdir()) == [
            "model.onnx",
            "report.json",
        ], version
    assert not (models / "mlp" / "7").exists()
