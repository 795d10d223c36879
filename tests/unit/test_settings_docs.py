"""docs/configuration.md's YAML example is a valid settings file that lists every setting."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from modelport.config import Settings, load_settings

DOC = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"
CHANGED_IN_EXAMPLE = {("server", "host"), ("repository", "model_repository")}


def example(tmp_path: Path) -> Path:
    text = DOC.read_text()
    block = re.search(r"```yaml\n(# modelport\.yaml.*?)```", text, re.DOTALL)
    assert block is not None, "the YAML example is gone from docs/configuration.md"
    path = tmp_path / "modelport.yaml"
    path.write_text(block.group(1))
    return path


def test_the_example_loads(tmp_path: Path) -> None:
    settings = load_settings({}, example(tmp_path))
    assert settings.server.host == "0.0.0.0"
    assert str(settings.repository.model_repository) == "examples/models"


def test_the_example_names_every_setting_with_its_default(tmp_path: Path) -> None:
    document = yaml.safe_load(example(tmp_path).read_text())
    defaults = Settings().model_dump()
    for section, values in defaults.items():
        if section == "repository":
            continue  # one source only: the example gives the folder, not the other two
        assert set(document[section]) == set(values), f"section {section}"
        for key, value in values.items():
            if (section, key) not in CHANGED_IN_EXAMPLE:
                assert document[section][key] == value, f"{section}.{key}"
