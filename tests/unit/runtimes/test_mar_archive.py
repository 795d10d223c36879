"""TorchServe archives: a malicious corpus refused without a trace, limits, manifests, and the
real output of torch-model-archiver extracted and parsed."""

from __future__ import annotations

import io
import json
import os
import shutil
import stat
import subprocess
import sys
import tarfile
import warnings
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from modelport.errors import ModelLoadError
from modelport.model_config import ArchiveConfig, ModelConfig
from modelport.runtimes.mar_archive import (
    ArchiveLimits,
    MarManifest,
    _Entry,
    _Refused,
    _Writer,
    extract_archive,
    find_archive,
)
from modelport.runtimes.mar_manifest import BUILTIN_HANDLERS, read_manifest

HANDLER = (
    b"from ts.torch_handler.base_handler import BaseHandler\n\n\n"
    b"class TinyHandler(BaseHandler):\n"
    b"    def postprocess(self, data):\n"
    b"        return data.tolist()\n"
)
SMALL = ArchiveLimits(max_entries=20, max_entry_bytes=4096, max_total_bytes=8192)

Member = tuple[str | zipfile.ZipInfo, bytes]


def manifest(**model: Any) -> bytes:
    """A MANIFEST.json as torch-model-archiver 0.12 writes it; ``model`` overrides its keys."""
    fields: dict[str, Any] = {
        "modelName": "tiny",
        "serializedFile": "model.pt",
        "handler": "handler.py",
        "modelVersion": "1.0",
    }
    fields.update(model)
    document = {
        "createdOn": "22/11/2026 02:50:07",
        "runtime": "python",
        "model": {key: value for key, value in fields.items() if value is not None},
        "archiverVersion": "0.12.0",
    }
    return json.dumps(document, indent=2).encode()


def good_files() -> list[tuple[str, bytes]]:
    return [
        ("MAR-INF/MANIFEST.json", manifest()),
        ("model.pt", b"serialized weights"),
        ("handler.py", HANDLER),
    ]


def good_members() -> list[Member]:
    return list(good_files())


def write_zip(path: Path, members: Sequence[Member]) -> Path:
    """A zip with exactly these entries, duplicates and all (zipfile warns, the test does not)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
            for name, data in members:
                zf.writestr(name, data)
    return path


def entry(name: str, mode: int = stat.S_IFREG | 0o644) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    info.filename = name  # ZipInfo cuts names at a NUL byte; a crafted archive does not
    info.external_attr = mode << 16
    info.create_system = 3  # Unix, so the mode bits count
    info.compress_type = zipfile.ZIP_DEFLATED
    return info


def write_tgz(path: Path, members: list[tuple[tarfile.TarInfo, bytes]]) -> Path:
    with tarfile.open(path, "w:gz") as tf:
        for info, data in members:
            info.size = len(data) if info.isreg() else 0
            tf.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return path


def tar_member(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = link
    info.mode = 0o755 if kind == tarfile.DIRTYPE else 0o644
    return info


def good_tar_members(top: str = "tiny") -> list[tuple[tarfile.TarInfo, bytes]]:
    return [(tar_member(f"{top}/{name}"), data) for name, data in good_files()]


def patch_central_header(path: Path, name: str, offset: int, value: int, width: int) -> None:
    """Overwrite a field of ``name``'s central directory header, which zipfile reads."""
    data = bytearray(path.read_bytes())
    at = data.find(b"PK\x01\x02")
    while data[at + 46 : at + 46 + int.from_bytes(data[at + 28 : at + 30], "little")] != (
        name.encode()
    ):
        at = data.find(b"PK\x01\x02", at + 1)
        assert at >= 0, name
    data[at + offset : at + offset + width] = value.to_bytes(width, "little")
    path.write_bytes(bytes(data))


def lie_about_size(path: Path, name: str, declared: int) -> None:
    """Make the central directory declare ``declared`` uncompressed bytes for ``name``."""
    patch_central_header(path, name, 24, declared, 4)


def mark_encrypted(path: Path, name: str) -> None:
    """Set the "encrypted" flag of ``name`` (zipfile clears it when writing)."""
    with zipfile.ZipFile(path) as zf:
        flags = zf.getinfo(name).flag_bits
    patch_central_header(path, name, 8, flags | 0x1, 2)


def snapshot(root: Path) -> dict[str, bytes | None]:
    """Every path under ``root`` with its content (None for folders), without following links."""
    found: dict[str, bytes | None] = {}
    for folder, folders, files in os.walk(root):
        for name in folders:
            found[os.path.relpath(os.path.join(folder, name), root)] = None
        for name in files:
            path = Path(folder, name)
            found[str(path.relative_to(root))] = path.read_bytes()
    return found


@pytest.fixture
def work(tmp_path: Path) -> Path:
    """A folder with a sentinel file, an ``archives`` folder and an empty ``models`` folder."""
    (tmp_path / "archives").mkdir()
    (tmp_path / "models").mkdir()
    (tmp_path / "sentinel.txt").write_text("untouched")
    return tmp_path


def target_of(work: Path) -> Path:
    return work / "models" / "tiny"


def refused(work: Path, archive: Path, limits: ArchiveLimits | None = None) -> str:
    """Extract ``archive``, expect a refusal, check that nothing changed, return the message."""
    before = snapshot(work)
    with pytest.raises(ModelLoadError) as caught:
        extract_archive(archive, target_of(work), limits or ArchiveLimits())
    assert snapshot(work) == before, "the refused extraction left something behind"
    message = str(caught.value)
    assert archive.name in message
    return message


# -- the malicious corpus -----------------------------------------------------------------------

ZIP_CORPUS: dict[str, tuple[list[Member], list[str]]] = {
    "zip-slip": (
        [*good_members(), ("../evil.py", b"x")],
        ["'../evil.py'", "'..' component", "torch-model-archiver"],
    ),
    "nested-slip": (
        [*good_members(), ("a/../../evil.py", b"x")],
        ["'a/../../evil.py'", "'..' component"],
    ),
    "backslash": ([*good_members(), ("..\\evil.py", b"x")], ["backslash"]),
    "drive-letter": ([*good_members(), ("C:/evil.py", b"x")], ["drive letter"]),
    "nul-byte": ([*good_members(), (entry("handler.py\x00.txt"), b"x")], ["NUL byte"]),
    "control-character": ([*good_members(), ("evil\n.py", b"x")], ["control character"]),
    "long-name": ([*good_members(), ("a" * 256, b"x")], ["longer than 255 bytes"]),
    "symlink": (
        [*good_members(), (entry("passwd", stat.S_IFLNK | 0o777), b"/etc/passwd")],
        ["'passwd'", "symbolic link", "only regular files and folders"],
    ),
    "character-device": (
        [*good_members(), (entry("tty", stat.S_IFCHR | 0o666), b"")],
        ["character device"],
    ),
    "block-device": ([*good_members(), (entry("sda", stat.S_IFBLK | 0o660), b"")], ["block"]),
    "fifo": ([*good_members(), (entry("pipe", stat.S_IFIFO | 0o644), b"")], ["FIFO"]),
    "socket": ([*good_members(), (entry("sock", stat.S_IFSOCK | 0o644), b"")], ["socket"]),
    "folder-without-slash": (
        [*good_members(), (entry("folder", stat.S_IFDIR | 0o755), b"")],
        ["marked as a folder"],
    ),
    "duplicate": ([*good_members(), ("model.pt", b"other weights")], ["appears twice"]),
    "duplicate-spelt-differently": (
        [*good_members(), ("./model.pt", b"other weights")],
        ["'./model.pt'", "appears twice"],
    ),
    "file-and-folder": (
        [*good_members(), ("model.pt/inner.bin", b"x")],
        ["both a file and a folder"],
    ),
    "folder-then-file": (
        [("extra/inner.bin", b"x"), ("extra", b"x"), *good_members()],
        ["'extra'", "both a file and a folder"],
    ),
}


@pytest.mark.parametrize("case", ZIP_CORPUS, ids=list(ZIP_CORPUS))
def test_malicious_zip_entries_are_refused_and_leave_nothing(work: Path, case: str) -> None:
    members, fragments = ZIP_CORPUS[case]
    message = refused(work, write_zip(work / "archives" / "tiny.mar", members))
    for fragment in fragments:
        assert fragment in message


def test_an_absolute_path_is_refused_and_not_written(work: Path) -> None:
    outside = work / "absolute.py"
    archive = write_zip(work / "archives" / "tiny.mar", [*good_members(), (str(outside), b"x")])
    message = refused(work, archive)
    assert "absolute path" in message
    assert str(outside) in message
    assert not outside.exists()


def test_an_encrypted_entry_is_refused(work: Path) -> None:
    archive = write_zip(work / "archives" / "tiny.mar", [*good_members(), ("secret.bin", b"x")])
    mark_encrypted(archive, "secret.bin")
    message = refused(work, archive)
    assert "'secret.bin' is encrypted; re-create the archive with torch-model-archiver, " in message
    assert message.endswith("without a password")


def test_refusals_name_the_archive_the_entry_the_rule_and_the_remedy(work: Path) -> None:
    archive = write_zip(work / "archives" / "tiny.mar", [*good_members(), ("../evil.py", b"x")])
    message = refused(work, archive)
    assert message == (
        "cannot extract model archive tiny.mar: entry '../evil.py' has a '..' component, which "
        "points outside the extraction folder; re-create the archive with torch-model-archiver"
    )


TAR_CORPUS: dict[str, tuple[tarfile.TarInfo, list[str]]] = {
    "tar-slip": (tar_member("tiny/../../evil.py"), ["'..' component"]),
    "tar-absolute": (tar_member("/tmp/evil.py"), ["absolute path"]),
    "tar-symlink": (tar_member("tiny/passwd", tarfile.SYMTYPE, "/etc/passwd"), ["symbolic link"]),
    "tar-hardlink": (tar_member("tiny/passwd", tarfile.LNKTYPE, "/etc/passwd"), ["hard link"]),
    "tar-device": (tar_member("tiny/tty", tarfile.CHRTYPE), ["a device"]),
    "tar-fifo": (tar_member("tiny/pipe", tarfile.FIFOTYPE), ["FIFO"]),
}


@pytest.mark.parametrize("case", TAR_CORPUS, ids=list(TAR_CORPUS))
def test_malicious_tgz_members_are_refused_and_leave_nothing(work: Path, case: str) -> None:
    member, fragments = TAR_CORPUS[case]
    archive = write_tgz(work / "archives" / "tiny.tar.gz", [*good_tar_members(), (member, b"")])
    message = refused(work, archive)
    assert f"entry {member.name!r}" in message
    for fragment in fragments:
        assert fragment in message


def test_a_file_that_is_no_archive_is_refused(work: Path) -> None:
    archive = work / "archives" / "tiny.mar"
    archive.write_bytes(b"this is not a zip file" * 10)
    assert "neither a zip file (.mar) nor a gzip-compressed tar file" in refused(work, archive)


def test_a_truncated_tgz_is_refused(work: Path) -> None:
    archive = write_tgz(work / "archives" / "tiny.tar.gz", good_tar_members())
    archive.write_bytes(archive.read_bytes()[:-40])
    assert "Compressed file ended before the end-of-stream marker" in refused(work, archive)


def test_a_missing_archive_is_reported(work: Path) -> None:
    message = refused(work, work / "archives" / "absent.mar")
    assert message == (
        "cannot extract model archive absent.mar: cannot be opened (No such file or directory); "
        "check that it exists and is readable"
    )


# -- limits -------------------------------------------------------------------------------------


def test_too_many_entries_are_refused_before_any_is_read(work: Path) -> None:
    members = [*good_members(), *((f"extra/{i}.txt", b"x") for i in range(30))]
    message = refused(work, write_zip(work / "archives" / "tiny.mar", members), SMALL)
    assert "declares 33 entries, over archive.max_entries" in message
    assert "raise archive.max_entries (now 20) in the model's config.yaml" in message


def test_too_many_tgz_members_are_refused_while_reading(work: Path) -> None:
    members = [*good_tar_members(), *((tar_member(f"tiny/{i}.txt"), b"x") for i in range(30))]
    message = refused(work, write_tgz(work / "archives" / "tiny.tar.gz", members), SMALL)
    assert "'tiny/17.txt' is entry number 21, over archive.max_entries" in message


def test_a_huge_entry_is_refused_from_its_header(work: Path) -> None:
    members = [*good_members(), ("weights.bin", os.urandom(5000))]
    message = refused(work, write_zip(work / "archives" / "tiny.mar", members), SMALL)
    assert "'weights.bin' declares more than archive.max_entry_bytes (4096 bytes)" in message
    assert "raise archive.max_entry_bytes" in message


def test_a_huge_tgz_member_is_refused(work: Path) -> None:
    members = [*good_tar_members(), (tar_member("tiny/weights.bin"), os.urandom(5000))]
    message = refused(work, write_tgz(work / "archives" / "tiny.tar.gz", members), SMALL)
    assert "more than archive.max_entry_bytes (4096 bytes)" in message


def test_a_total_over_the_limit_is_refused(work: Path) -> None:
    members = [*good_members(), *((f"part{i}.bin", os.urandom(3000)) for i in range(3))]
    message = refused(work, write_zip(work / "archives" / "tiny.mar", members), SMALL)
    assert "'part2.bin' declares a total of more than archive.max_total_bytes" in message


def test_a_zip_bomb_entry_is_refused(work: Path) -> None:
    members = [*good_members(), ("bomb.bin", bytes(8 << 20))]
    message = refused(work, write_zip(work / "archives" / "tiny.mar", members))
    assert "'bomb.bin' declares 8388608 bytes from" in message
    assert "over archive.max_ratio (100), as a zip bomb does" in message
    assert "raise archive.max_ratio (now 100) in the model's config.yaml" in message


def test_many_small_bombs_are_refused_as_the_extracted_total_grows(work: Path) -> None:
    # Each entry is at the size exempt from the ratio; together they expand 1,000-fold.
    members = [*good_members(), *((f"zeros{i}.bin", bytes(1 << 20)) for i in range(6))]
    message = refused(work, write_zip(work / "archives" / "tiny.mar", members))
    assert "brings the extracted size over archive.max_ratio (100)" in message


def test_a_tgz_bomb_is_refused_while_streaming(work: Path) -> None:
    members = [*good_tar_members(), (tar_member("tiny/zeros.bin"), bytes(8 << 20))]
    message = refused(work, write_tgz(work / "archives" / "tiny.tar.gz", members))
    assert "'tiny/zeros.bin' brings the extracted size over archive.max_ratio" in message


def test_a_header_that_understates_the_size_does_not_get_more_through(work: Path) -> None:
    archive = write_zip(work / "archives" / "tiny.mar", [("weights.bin", os.urandom(64 << 10))])
    lie_about_size(archive, "weights.bin", 100)
    with zipfile.ZipFile(archive) as zf:
        assert zf.getinfo("weights.bin").file_size == 100
    message = refused(work, archive, SMALL)
    assert "'weights.bin' cannot be read" in message
    assert "CRC" in message


def test_bytes_are_counted_as_written_whatever_the_header_declares(tmp_path: Path) -> None:
    writer = _Writer(tmp_path, SMALL, archive_bytes=1 << 30)
    liar = _Entry("weights.bin", ("weights.bin",), is_dir=False, size=10, compressed=10 << 20)
    writer.declare(liar)
    with pytest.raises(_Refused, match=r"expands to more than archive\.max_entry_bytes"):
        writer.write(liar, lambda: io.BytesIO(bytes(SMALL.max_entry_bytes + 1)))
    assert (tmp_path / "weights.bin").stat().st_size == 0  # the refused chunk was not written


def test_limits_are_configurable_per_model_with_the_same_defaults() -> None:
    assert ArchiveLimits(**ArchiveConfig().model_dump()) == ArchiveLimits()
    config = ModelConfig.model_validate({"archive": {"max_entries": 5, "max_ratio": 1000}})
    limits = ArchiveLimits(**config.archive.model_dump())
    assert (limits.max_entries, limits.max_ratio) == (5, 1000)
    with pytest.raises(ValueError, match="max_entrys"):
        ModelConfig.model_validate({"archive": {"max_entrys": 5}})


def test_a_raised_limit_lets_a_genuine_archive_through(work: Path) -> None:
    members = [*good_members(), ("zeros.bin", bytes(2 << 20))]
    archive = write_zip(work / "archives" / "tiny.mar", members)
    refused(work, archive)
    extract_archive(archive, target_of(work), ArchiveLimits(max_ratio=10_000))
    assert (target_of(work) / "zeros.bin").stat().st_size == 2 << 20


# -- manifests ----------------------------------------------------------------------------------

MANIFEST_CASES: dict[str, tuple[bytes | None, list[str]]] = {
    "missing": (None, ["MAR-INF/MANIFEST.json is missing"]),
    "not-json": (b"{not json", ["is not valid JSON"]),
    "not-an-object": (b"[]", ["must hold a JSON object"]),
    "no-model": (b'{"runtime": "python"}', ['has no "model" object']),
    "no-model-name": (manifest(modelName=None), ["has no model.modelName"]),
    "no-handler": (manifest(handler=None), ["has no model.handler"]),
    "name-not-a-string": (manifest(modelName=3), ["gives model.modelName as int, not a string"]),
    "serialized-file-absent": (
        manifest(serializedFile="weights.pt"),
        ["model.serializedFile 'weights.pt', which is not in the archive", "--serialized-file"],
    ),
    "model-file-absent": (
        manifest(modelFile="net.py"),
        ["model.modelFile 'net.py', which is not in the archive", "--model-file"],
    ),
    "serialized-file-outside": (
        manifest(serializedFile="../../etc/passwd"),
        ["'../../etc/passwd', which has a '..' component"],
    ),
    "handler-absent": (
        manifest(handler="custom.py"),
        ["neither a file in the archive (custom.py) nor one of TorchServe's built-in handlers"],
    ),
    "cpp-runtime": (
        manifest().replace(b'"python"', b'"LSP"'),
        ['runtime "LSP"', "modelport runs Python handlers only"],
    ),
}


@pytest.mark.parametrize("case", MANIFEST_CASES, ids=list(MANIFEST_CASES))
def test_bad_manifests_are_refused_and_leave_nothing(work: Path, case: str) -> None:
    document, fragments = MANIFEST_CASES[case]
    members = [m for m in good_members() if m[0] != "MAR-INF/MANIFEST.json"]
    if document is not None:
        members.append(("MAR-INF/MANIFEST.json", document))
    message = refused(work, write_zip(work / "archives" / "tiny.mar", members))
    assert message.startswith("model archive tiny.mar: MAR-INF/MANIFEST.json ")
    assert "torch-model-archiver" in message
    for fragment in fragments:
        assert fragment in message


def test_a_built_in_handler_needs_no_file(work: Path) -> None:
    members = [
        ("MAR-INF/MANIFEST.json", manifest(handler="image_classifier")),
        ("model.pt", b"weights"),
    ]
    archive = write_zip(work / "archives" / "tiny.mar", members)
    parsed = extract_archive(archive, target_of(work))
    assert parsed.builtin_handler
    assert parsed.handler_module == "image_classifier"


def test_a_handler_function_is_split_from_its_module(work: Path) -> None:
    members = [
        ("MAR-INF/MANIFEST.json", manifest(handler="handler:handle")),
        ("model.pt", b"weights"),
        ("handler.py", b"def handle(data, context):\n    return data\n"),
    ]
    parsed = extract_archive(write_zip(work / "archives" / "tiny.mar", members), target_of(work))
    assert (parsed.handler_module, parsed.handler_function) == ("handler", "handle")
    assert not parsed.builtin_handler


# -- good archives ------------------------------------------------------------------------------


def test_a_good_zip_is_extracted_with_safe_modes(work: Path) -> None:
    members = [
        *good_members(),
        (entry("setup.sh", stat.S_IFREG | 0o4777), b"#!/bin/sh\n"),
        (entry("assets/", stat.S_IFDIR | 0o777), b""),
        ("assets/vocab/labels.json", b'["cat", "dog"]'),
    ]
    archive = write_zip(work / "archives" / "tiny.mar", members)
    parsed = extract_archive(archive, target_of(work))
    target = target_of(work)
    assert parsed == MarManifest(
        model_name="tiny",
        handler="handler.py",
        serialized_file="model.pt",
        model_version="1.0",
        created_on="22/11/2026 02:50:07",
        archiver_version="0.12.0",
    )
    assert parsed.raw["model"]["modelName"] == "tiny"
    assert (target / "handler.py").read_bytes() == HANDLER
    assert (target / "assets" / "vocab" / "labels.json").read_bytes() == b'["cat", "dog"]'
    for path in [target, *target.rglob("*")]:
        expected = 0o755 if path.is_dir() else 0o644
        assert stat.S_IMODE(path.stat().st_mode) == expected, path
    assert os.listdir(target.parent) == ["tiny"]  # no staging folder left beside it


def test_a_tgz_is_extracted_without_its_top_folder(work: Path) -> None:
    archive = write_tgz(work / "archives" / "tiny.tar.gz", good_tar_members("tiny-export"))
    parsed = extract_archive(archive, target_of(work))
    assert parsed.model_name == "tiny"
    assert sorted(p.name for p in target_of(work).iterdir()) == [
        "MAR-INF",
        "handler.py",
        "model.pt",
    ]
    assert os.listdir(target_of(work).parent) == ["tiny"]


def test_an_existing_target_is_left_alone(work: Path) -> None:
    target_of(work).mkdir()
    (target_of(work) / "keep.txt").write_text("mine")
    archive = write_zip(work / "archives" / "tiny.mar", good_members())
    message = refused(work, archive)
    assert "already exists" in message


def test_a_missing_parent_folder_is_reported(work: Path) -> None:
    archive = write_zip(work / "archives" / "tiny.mar", good_members())
    with pytest.raises(ModelLoadError, match="exists and is writable"):
        extract_archive(archive, work / "absent" / "tiny")


# -- finding the archive ------------------------------------------------------------------------


def test_find_archive(tmp_path: Path) -> None:
    version = tmp_path / "tiny" / "1"
    version.mkdir(parents=True)
    assert find_archive(version) is None
    (version / ".hidden.mar").write_bytes(b"")
    (version / "README.txt").write_text("notes")
    write_zip(version / "tiny.mar", good_members())
    assert find_archive(version) == version / "tiny.mar"
    write_tgz(version / "other.tar.gz", good_tar_members())
    with pytest.raises(ModelLoadError) as caught:
        find_archive(version)
    assert str(caught.value) == (
        "version folder 1 holds several model archives (other.tar.gz, tiny.mar); keep one, or "
        "name the one to serve with default_model_filename in config.yaml"
    )
    assert find_archive(version, "other.tar.gz") == version / "other.tar.gz"
    assert find_archive(version, "README.txt") is None
    assert find_archive(version, "absent.mar") is None


# -- torch-model-archiver's real output ---------------------------------------------------------


def archiver() -> Path:
    pytest.importorskip("model_archiver", reason="torch-model-archiver is in the test extras")
    found = Path(sys.executable).parent / "torch-model-archiver"
    path = shutil.which("torch-model-archiver") if not found.exists() else str(found)
    assert path, "torch-model-archiver is installed but its command is not on PATH"
    return Path(path)


@pytest.fixture(scope="module")
def archiver_inputs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A TorchScript model, a BaseHandler subclass and an extra file, as a user would have them."""
    torch = pytest.importorskip("torch")
    folder = tmp_path_factory.mktemp("inputs")
    with warnings.catch_warnings():  # torch 2.13 deprecates TorchScript; archives still hold it
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.script(torch.nn.Linear(2, 1)).save(str(folder / "model.pt"))
    (folder / "handler.py").write_bytes(HANDLER)
    (folder / "index_to_name.json").write_text('{"0": "score"}')
    return folder


ArchiveBuilder = Callable[..., Path]


@pytest.fixture
def archive_with_cli(archiver_inputs: Path, tmp_path: Path) -> ArchiveBuilder:
    """Run torch-model-archiver on the inputs; return what it wrote (file or folder)."""
    command = archiver()

    def build(archive_format: str = "default", handler: str = "handler.py") -> Path:
        export = tmp_path / f"export-{archive_format}"
        export.mkdir()
        handler_arg = handler if handler in BUILTIN_HANDLERS else archiver_inputs / handler
        subprocess.run(
            [
                str(command),
                "--model-name=tiny",
                "--version=1.0",
                f"--serialized-file={archiver_inputs / 'model.pt'}",
                f"--handler={handler_arg}",
                f"--extra-files={archiver_inputs / 'index_to_name.json'}",
                f"--export-path={export}",
                f"--archive-format={archive_format}",
            ],
            check=True,
            capture_output=True,
            timeout=120,
        )
        (produced,) = export.iterdir()
        return produced

    return build


def check_extracted(
    parsed: MarManifest, folder: Path, inputs: Path, handler: str = "handler.py"
) -> None:
    assert parsed.model_name == "tiny"
    assert parsed.model_version == "1.0"
    assert parsed.runtime == "python"
    assert parsed.serialized_file == "model.pt"
    assert parsed.handler == handler
    assert not parsed.builtin_handler
    assert parsed.archiver_version == "0.12.0"
    assert parsed.created_on
    for name in ("model.pt", "handler.py", "index_to_name.json"):
        assert (folder / name).read_bytes() == (inputs / name).read_bytes()


def test_a_real_mar_is_extracted_and_its_manifest_read(
    archive_with_cli: ArchiveBuilder, archiver_inputs: Path, tmp_path: Path
) -> None:
    archive = archive_with_cli()
    assert archive.name == "tiny.mar"
    version = tmp_path / "models" / "tiny" / "1"
    version.mkdir(parents=True)
    shutil.move(archive, version / archive.name)
    found = find_archive(version)
    assert found == version / "tiny.mar"
    parsed = extract_archive(found, tmp_path / "extracted")
    check_extracted(parsed, tmp_path / "extracted", archiver_inputs)


def test_a_real_tgz_is_extracted_and_its_manifest_read(
    archive_with_cli: ArchiveBuilder, archiver_inputs: Path, tmp_path: Path
) -> None:
    archive = archive_with_cli("tgz", handler="handler:handle")
    assert archive.name == "tiny.tar.gz"
    parsed = extract_archive(archive, tmp_path / "extracted")
    check_extracted(parsed, tmp_path / "extracted", archiver_inputs, handler="handler:handle")
    assert (parsed.handler_module, parsed.handler_function) == ("handler", "handle")


def test_a_real_no_archive_folder_has_a_readable_manifest(
    archive_with_cli: ArchiveBuilder, archiver_inputs: Path
) -> None:
    folder = archive_with_cli("no-archive")
    check_extracted(read_manifest(folder), folder, archiver_inputs)


def test_a_real_mar_with_a_built_in_handler(
    archive_with_cli: ArchiveBuilder, tmp_path: Path
) -> None:
    parsed = extract_archive(archive_with_cli(handler="image_classifier"), tmp_path / "extracted")
    assert parsed.builtin_handler
    assert parsed.handler == "image_classifier"
    assert not (tmp_path / "extracted" / "handler.py").exists()
