"""Safe extraction of TorchServe model archives (``.mar``), and finding one in a version folder.

A ``.mar`` is a zip file written by ``torch-model-archiver``. Its ``--archive-format tgz`` output,
``<name>.tar.gz`` with every file under a ``<name>/`` folder, is read too; the format is told by
the file's first bytes, not by its name.

Extraction is all or nothing. Files are written into a hidden folder beside the target, and that
folder is renamed to the target only once every entry is written and the manifest checks out; on
any refusal the hidden folder is removed and nothing else exists. Refused:

- names that could land outside the target: absolute paths, ``..`` components, backslashes,
  drive letters, NUL bytes and other control characters;
- anything but regular files and folders: symbolic and hard links, devices, FIFOs, sockets;
- encrypted entries, duplicate names, a name that is both a file and a folder;
- more than ``max_entries`` entries, an entry over ``max_entry_bytes``, more than
  ``max_total_bytes`` in all, and an entry or archive that expands more than ``max_ratio`` times
  (zip bombs). Sizes are checked twice: against what the headers declare, before anything is
  written, and against the bytes actually written, while they stream.

Files are written with mode 0o644 and folders with 0o755, whatever the archive says.
"""

from __future__ import annotations

import logging
import os
import shutil
import stat
import tarfile
import tempfile
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import IO, TypeVar

from modelport.errors import ModelLoadError
from modelport.runtimes.mar_manifest import (
    MANIFEST_PATH,
    MarManifest,
    read_manifest,
    relative_parts,
)

__all__ = [
    "ARCHIVE_SUFFIXES",
    "RATIO_FLOOR_BYTES",
    "ArchiveLimits",
    "MarManifest",
    "extract_archive",
    "find_archive",
]

log = logging.getLogger(__name__)

_T = TypeVar("_T")

#: The file names torch-model-archiver gives its zip (default) and tgz outputs.
ARCHIVE_SUFFIXES = (".mar", ".tar.gz")

#: Entries, and archives, that expand to no more than this are not held to ``max_ratio``: small
#: text files compress far better than any model does.
RATIO_FLOOR_BYTES = 1 << 20

_CHUNK = 1 << 20
_GZIP_MAGIC = b"\x1f\x8b"
_RECREATE = "re-create the archive with torch-model-archiver"
#: What zipfile and tarfile raise on damaged data (an unknown compression method, a bad CRC).
_READ_ERRORS = (
    zipfile.BadZipFile,
    tarfile.TarError,
    zlib.error,
    EOFError,
    OSError,
    ValueError,
    NotImplementedError,
    RuntimeError,
)
_SPECIAL_TYPES = {
    stat.S_IFLNK: "a symbolic link",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFIFO: "a FIFO",
    stat.S_IFSOCK: "a socket",
}


@dataclass(frozen=True, slots=True)
class ArchiveLimits:
    """How large an archive may expand; the ``archive:`` section of a model's ``config.yaml``."""

    max_entries: int = 10_000
    """Files and folders in the archive."""
    max_entry_bytes: int = 8 << 30
    """Bytes of one extracted file."""
    max_total_bytes: int = 16 << 30
    """Bytes of all extracted files together."""
    max_ratio: float = 100.0
    """Extracted bytes per compressed byte, for each entry and for the archive as a whole."""


class _Refused(Exception):
    """An entry (or the archive) breaks a rule; ``extract_archive`` adds the archive's name."""

    def __init__(self, entry: str | None, rule: str, advice: str = _RECREATE) -> None:
        super().__init__(rule)
        self.entry = entry
        self.rule = rule
        self.advice = advice

    def error(self, archive: Path) -> ModelLoadError:
        where = f"entry {self.entry!r} " if self.entry is not None else ""
        return ModelLoadError(
            f"cannot extract model archive {archive.name}: {where}{self.rule}; {self.advice}"
        )


def _raise_limit(key: str, limits: ArchiveLimits) -> str:
    value = getattr(limits, key)
    shown = f"{value:g}" if isinstance(value, float) else str(value)
    return (
        f"if the archive is genuine, raise archive.{key} (now {shown}) in the model's config.yaml"
    )


@dataclass(frozen=True, slots=True)
class _Entry:
    """One archive member, checked by name and type; ``size`` is what its header declares."""

    name: str
    parts: tuple[str, ...]
    is_dir: bool
    size: int
    compressed: int | None = None


def find_archive(version_dir: Path, filename: str | None = None) -> Path | None:
    """The model archive in ``version_dir``: ``filename`` if given, else the only ``*.mar``.

    Also finds a ``*.tar.gz`` (torch-model-archiver's tgz format). Returns None when there is
    none, and raises ``ModelLoadError`` when there are several and ``filename`` picks none.
    """
    if filename:
        candidate = version_dir / filename
        is_archive = filename.endswith(ARCHIVE_SUFFIXES) and candidate.is_file()
        return candidate if is_archive else None
    found = sorted(
        path
        for path in version_dir.iterdir()
        if path.name.endswith(ARCHIVE_SUFFIXES) and not path.name.startswith(".") and path.is_file()
    )
    if len(found) > 1:
        names = ", ".join(path.name for path in found)
        raise ModelLoadError(
            f"version folder {version_dir.name} holds several model archives ({names}); keep "
            "one, or name the one to serve with default_model_filename in config.yaml"
        )
    return found[0] if found else None


def extract_archive(
    archive: Path, target: Path, limits: ArchiveLimits = ArchiveLimits()
) -> MarManifest:
    """Extract ``archive`` into the new folder ``target`` and return its checked manifest.

    ``target`` must not exist; its parent must. Raises ``ModelLoadError`` naming the archive,
    the entry and the rule it breaks; then nothing has been written (see the module docstring).
    """
    if target.exists() or target.is_symlink():
        raise ModelLoadError(
            f"cannot extract model archive {archive.name}: {target} already exists; remove it"
        )
    try:
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    except OSError as exc:
        raise ModelLoadError(
            f"cannot extract model archive {archive.name}: {exc}; check that {target.parent} "
            "exists and is writable"
        ) from exc
    try:
        entries, size = _extract_into(archive, staging, limits)
        root = _content_root(staging)
        manifest = read_manifest(root, archive.name)
        _set_folder_modes(root)
        root.rename(target)
    except _Refused as refused:
        raise refused.error(archive) from None
    except OSError as exc:
        raise ModelLoadError(
            f"cannot extract model archive {archive.name}: {exc}; check the free space and "
            "permissions of the folder it is extracted into"
        ) from exc
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    log.info("extracted %s: %d entries, %d bytes", archive.name, entries, size)
    return manifest


def _extract_into(archive: Path, staging: Path, limits: ArchiveLimits) -> tuple[int, int]:
    try:
        with archive.open("rb") as head:
            magic = head.read(len(_GZIP_MAGIC))
            size = os.fstat(head.fileno()).st_size
    except OSError as exc:
        raise _Refused(
            None, f"cannot be opened ({exc.strerror})", "check that it exists and is readable"
        ) from exc
    writer = _Writer(staging, limits, size)
    if magic == _GZIP_MAGIC:
        _extract_tar(archive, writer)
    elif zipfile.is_zipfile(archive):
        _extract_zip(archive, writer)
    else:
        raise _Refused(None, "is neither a zip file (.mar) nor a gzip-compressed tar file")
    return writer.tree.count, writer.total


def _content_root(staging: Path) -> Path:
    """The extracted folder holding ``MAR-INF``: ``staging``, or its only folder (tgz layout)."""
    manifest = MANIFEST_PATH.split("/")
    if staging.joinpath(*manifest).is_file():
        return staging
    children = list(staging.iterdir())
    if len(children) == 1 and children[0].joinpath(*manifest).is_file():
        return children[0]
    return staging  # read_manifest says the manifest is missing


def _set_folder_modes(root: Path) -> None:
    for folder, _, _ in os.walk(root):
        os.chmod(folder, 0o755)


def _extract_zip(archive: Path, writer: _Writer) -> None:
    declared = _zip_declared_count(archive)
    if declared is not None and declared > writer.limits.max_entries:
        raise _Refused(
            None,
            f"declares {declared} entries, over archive.max_entries",
            _raise_limit("max_entries", writer.limits),
        )
    try:
        zf = zipfile.ZipFile(archive)
    except _READ_ERRORS as exc:
        raise _Refused(None, f"is not a readable zip file ({exc})") from exc
    with zf:
        # Every header is checked before the first byte is written.
        members = [(info, _zip_entry(info)) for info in zf.infolist()]
        for _, entry in members:
            writer.declare(entry)
        for info, entry in members:
            writer.write(entry, partial(zf.open, info))


def _zip_entry(info: zipfile.ZipInfo) -> _Entry:
    name = info.orig_filename  # zipfile cuts ``filename`` at a NUL byte; this keeps it
    parts = _checked_parts(name)
    if info.flag_bits & 0x1:
        raise _Refused(name, "is encrypted", f"{_RECREATE}, without a password")
    kind = stat.S_IFMT(info.external_attr >> 16)
    is_dir = name.endswith("/")
    if kind == stat.S_IFDIR and not is_dir:
        raise _Refused(name, "is marked as a folder, but its name does not end with '/'")
    if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
        raise _Refused(name, f"is {_special(kind)}; only regular files and folders are extracted")
    compressed = info.compress_size if not is_dir else None
    return _Entry(name, parts, is_dir, 0 if is_dir else info.file_size, compressed)


def _zip_declared_count(archive: Path) -> int | None:
    """The entry count in the end-of-central-directory record, read before zipfile parses it."""
    with archive.open("rb") as fp:
        size = fp.seek(0, os.SEEK_END)
        fp.seek(max(0, size - (22 + 0xFFFF + 20)))
        tail = fp.read()
        at = tail.rfind(b"PK\x05\x06")
        if at < 0 or len(tail) - at < 22:
            return None
        count = int.from_bytes(tail[at + 10 : at + 12], "little")
        locator = tail[at - 20 : at] if at >= 20 else b""
        if count == 0xFFFF and locator[:4] == b"PK\x06\x07":  # zip64: the count is elsewhere
            fp.seek(int.from_bytes(locator[8:16], "little"))
            record = fp.read(56)
            if record[:4] == b"PK\x06\x06":
                count = int.from_bytes(record[32:40], "little")
        return count


def _extract_tar(archive: Path, writer: _Writer) -> None:
    with _open_tar(archive) as tf:
        # One pass: each header is checked before its data is written.
        for member in _tar_members(tf):
            entry = _tar_entry(member)
            writer.declare(entry)
            writer.write(entry, partial(_tar_data, tf, member))


def _open_tar(archive: Path) -> tarfile.TarFile:
    try:
        return tarfile.open(archive, "r:gz")
    except _READ_ERRORS as exc:
        raise _Refused(None, f"is not a readable gzip-compressed tar file ({exc})") from exc


def _tar_members(tf: tarfile.TarFile) -> Iterator[tarfile.TarInfo]:
    while True:
        try:
            member = tf.next()
        except _READ_ERRORS as exc:
            raise _Refused(None, f"is not a readable gzip-compressed tar file ({exc})") from exc
        if member is None:
            return
        yield member


def _tar_data(tf: tarfile.TarFile, member: tarfile.TarInfo) -> IO[bytes]:
    stream = tf.extractfile(member)
    if stream is None:  # pragma: no cover - only regular files reach here
        raise _Refused(member.name, "has no data")
    return stream


def _tar_entry(member: tarfile.TarInfo) -> _Entry:
    parts = _checked_parts(member.name)
    if member.isdir():
        return _Entry(member.name, parts, True, 0)
    if member.isreg():
        return _Entry(member.name, parts, False, member.size)
    if member.issym():
        kind = "a symbolic link"
    elif member.islnk():
        kind = "a hard link"
    elif member.ischr() or member.isblk():
        kind = "a device"
    elif member.isfifo():
        kind = "a FIFO"
    else:
        kind = f"a special entry (tar type {member.type!r})"
    raise _Refused(member.name, f"is {kind}; only regular files and folders are extracted")


def _checked_parts(name: str) -> tuple[str, ...]:
    try:
        return relative_parts(name)
    except ValueError as exc:
        raise _Refused(name, str(exc)) from None


def _special(kind: int) -> str:
    return _SPECIAL_TYPES.get(kind, f"a special file (type {kind:#o})")


class _Tree:
    """The names accepted so far: refuses duplicates, file/folder clashes and too many entries."""

    def __init__(self, max_entries: int) -> None:
        self.max_entries = max_entries
        self.count = 0
        self.named: set[str] = set()
        self.files: set[str] = set()
        self.folders: set[str] = set()

    def accept(self, entry: _Entry, limits: ArchiveLimits) -> None:
        self.count += 1
        if self.count > self.max_entries:
            raise _Refused(
                entry.name,
                f"is entry number {self.count}, over archive.max_entries",
                _raise_limit("max_entries", limits),
            )
        key = "/".join(entry.parts)
        if key in self.named:
            raise _Refused(entry.name, "appears twice in the archive")
        parents = ["/".join(entry.parts[:i]) for i in range(1, len(entry.parts))]
        clash = next((p for p in parents if p in self.files), None)
        if clash is None and key in (self.files if entry.is_dir else self.folders):
            clash = key
        if clash is not None:
            raise _Refused(entry.name, f"needs {clash!r} to be both a file and a folder")
        self.named.add(key)
        self.folders.update(parents)
        (self.folders if entry.is_dir else self.files).add(key)


class _Writer:
    """Writes accepted entries under ``root``, counting every byte against the limits."""

    def __init__(self, root: Path, limits: ArchiveLimits, archive_bytes: int) -> None:
        self.root = root
        self.limits = limits
        self.archive_bytes = max(1, archive_bytes)
        self.tree = _Tree(limits.max_entries)
        self.declared = 0
        self.total = 0

    def declare(self, entry: _Entry) -> None:
        """Check an entry's name and the sizes its header claims, before writing anything."""
        self.tree.accept(entry, self.limits)
        self.declared += entry.size
        self._check_entry(entry, entry.size, "declares")
        if self.declared > self.limits.max_total_bytes:
            raise self._over_total(entry, "declares")

    def write(self, entry: _Entry, open_data: Callable[[], IO[bytes]]) -> None:
        """Create the entry; stream a file's data, checking the bytes actually written."""
        path = self.root.joinpath(*entry.parts)
        if entry.is_dir:
            path.mkdir(parents=True, exist_ok=True)
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        with os.fdopen(os.open(path, flags, 0o644), "wb") as out:
            os.fchmod(out.fileno(), 0o644)
            with _reading(entry, open_data) as source:
                written = 0
                while chunk := _reading(entry, partial(source.read, _CHUNK)):
                    written += len(chunk)
                    self.total += len(chunk)
                    self._check_written(entry, written)
                    out.write(chunk)

    def _check_written(self, entry: _Entry, written: int) -> None:
        self._check_entry(entry, written, "expands to")
        if self.total > self.limits.max_total_bytes:
            raise self._over_total(entry, "expands to")
        if self.total > RATIO_FLOOR_BYTES and self.total > self.limits.max_ratio * (
            self.archive_bytes
        ):
            raise _Refused(
                entry.name,
                f"brings the extracted size over archive.max_ratio ({self.limits.max_ratio:g}) "
                f"times the archive's {self.archive_bytes} bytes, as a zip bomb does",
                _raise_limit("max_ratio", self.limits),
            )

    def _check_entry(self, entry: _Entry, size: int, verb: str) -> None:
        limits = self.limits
        if size > limits.max_entry_bytes:
            raise _Refused(
                entry.name,
                f"{verb} more than archive.max_entry_bytes ({limits.max_entry_bytes} bytes)",
                _raise_limit("max_entry_bytes", limits),
            )
        compressed = entry.compressed
        if (
            compressed is not None
            and size > RATIO_FLOOR_BYTES
            and size > limits.max_ratio * max(1, compressed)
        ):
            raise _Refused(
                entry.name,
                f"{verb} {size} bytes from {compressed} compressed, over archive.max_ratio "
                f"({limits.max_ratio:g}), as a zip bomb does",
                _raise_limit("max_ratio", limits),
            )

    def _over_total(self, entry: _Entry, verb: str) -> _Refused:
        limit = self.limits.max_total_bytes
        return _Refused(
            entry.name,
            f"{verb} a total of more than archive.max_total_bytes ({limit} bytes)",
            _raise_limit("max_total_bytes", self.limits),
        )


def _reading(entry: _Entry, read: Callable[[], _T]) -> _T:
    """``read()``, with an error in the archive's data turned into a refusal naming the entry."""
    try:
        return read()
    except _READ_ERRORS as exc:
        raise _Refused(entry.name, f"cannot be read ({exc})") from exc
