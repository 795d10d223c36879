"""The output folder appears whole or not at all, and replaces only with force."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelport.convert.atomic import OutputFolder
from modelport.convert.errors import USAGE, ConversionError


def hidden(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p.name.startswith("."))


def test_a_committed_folder_appears_with_its_files(tmp_path: Path) -> None:
    target = tmp_path / "repo" / "model" / "3"
    with OutputFolder(target) as folder:
        assert folder.path.parent == target.parent
        assert folder.path.name.startswith(".3.")
        (folder.path / "model.onnx").write_bytes(b"onnx")
        assert not target.exists()
        folder.commit()
    assert (target / "model.onnx").read_bytes() == b"onnx"
    assert hidden(target.parent) == []
    assert target.stat().st_mode & 0o777 == 0o755


def test_an_empty_existing_folder_is_filled(tmp_path: Path) -> None:
    target = tmp_path / "3"
    target.mkdir()
    with OutputFolder(target) as folder:
        (folder.path / "model.onnx").write_bytes(b"onnx")
        folder.commit()
    assert [p.name for p in target.iterdir()] == ["model.onnx"]


def test_a_failure_leaves_nothing_behind(tmp_path: Path) -> None:
    target = tmp_path / "3"

    def build() -> None:
        with OutputFolder(target) as folder:
            (folder.path / "model.onnx").write_bytes(b"half")
            raise RuntimeError("export failed")

    with pytest.raises(RuntimeError, match="export failed"):
        build()
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []


def test_a_folder_with_files_is_refused_without_force(tmp_path: Path) -> None:
    target = tmp_path / "3"
    target.mkdir()
    (target / "model.onnx").write_bytes(b"old")
    with pytest.raises(ConversionError) as caught:
        OutputFolder(target)
    assert caught.value.exit_code == USAGE
    assert "--force" in caught.value.message
    assert hidden(tmp_path) == []


def test_force_swaps_the_old_folder_for_the_new_one(tmp_path: Path) -> None:
    target = tmp_path / "3"
    target.mkdir()
    (target / "model.onnx").write_bytes(b"old")
    (target / "stale.txt").write_text("from the old version")
    with OutputFolder(target, force=True) as folder:
        (folder.path / "model.onnx").write_bytes(b"new")
        folder.commit()
    assert sorted(p.name for p in target.iterdir()) == ["model.onnx"]
    assert (target / "model.onnx").read_bytes() == b"new"
    assert hidden(tmp_path) == []


def test_a_file_in_the_way_is_refused(tmp_path: Path) -> None:
    (tmp_path / "3").write_text("not a folder")
    with pytest.raises(ConversionError, match="is not a folder"):
        OutputFolder(tmp_path / "3", force=True)
