"""The README's commands run as written (against a server on free ports instead of 8501/8500)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.server import ServerProcess

README = Path(__file__).resolve().parents[2] / "README.md"
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.MULTILINE | re.DOTALL)


def blocks(section: str) -> list[tuple[str, str]]:
    """The fenced code blocks of one ``## section`` of the README, with their languages."""
    text = README.read_text()
    start = text.index(f"## {section}")
    end = text.find("\n## ", start + 1)
    return FENCE.findall(text[start : end if end != -1 else None])


def test_readme_starts_with_the_two_set_up_commands() -> None:
    text = README.read_text()
    first_block = FENCE.findall(text)[0][1]
    assert first_block.splitlines()[0].startswith("make serve")
    assert first_block.splitlines()[1].startswith("make test")


EXAMPLES = blocks("Talk to it")


@pytest.mark.parametrize(
    ("language", "code"), EXAMPLES, ids=[f"{i}-{lang}" for i, (lang, _) in enumerate(EXAMPLES)]
)
def test_readme_examples_run(examples_server: ServerProcess, language: str, code: str) -> None:
    code = code.replace("localhost:8501", f"localhost:{examples_server.port}")
    code = code.replace("localhost:8500", f"localhost:{examples_server.grpc_port}")
    if language == "bash":
        command = ["bash", "-euo", "pipefail", "-c", code]
    else:
        assert language == "python"
        command = [sys.executable, "-c", code]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert '"error"' not in result.stdout, result.stdout
    assert result.stdout.strip()
