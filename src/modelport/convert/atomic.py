"""Writing a step's output folder all at once, or not at all.

The result is built in a hidden folder beside the target (``.NAME.XXXX.partial``, on the same
file system, which a model repository's scan ignores because it is not a version number), and
moved into place with one ``rename`` once the gate has passed. A server watching the repository
therefore sees either no version folder or a complete one. With ``force``, an existing folder is
swapped for the new one in one step (``renameat2(RENAME_EXCHANGE)`` on Linux; elsewhere the old
folder is moved aside first), then deleted.
"""

from __future__ import annotations

import ctypes
import errno
import os
import shutil
import tempfile
from pathlib import Path
from types import TracebackType

from modelport.convert.errors import USAGE, ConversionError

__all__ = ["OutputFolder"]

_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


class OutputFolder:
    """A build folder for ``target``: ``commit()`` moves it into place, anything else removes it.

    A ``target`` that exists and is not an empty folder is refused unless ``force`` is true.
    """

    def __init__(self, target: Path, force: bool = False) -> None:
        self.target = Path(os.path.abspath(target))
        self.force = force
        self._check()
        self.target.parent.mkdir(parents=True, exist_ok=True)
        self.path = Path(
            tempfile.mkdtemp(
                prefix=f".{self.target.name}.", suffix=".partial", dir=self.target.parent
            )
        )
        self.committed = False

    def __enter__(self) -> OutputFolder:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if not self.committed:
            self.discard()

    def _check(self) -> None:
        if not self.target.exists():
            return
        if not self.target.is_dir():
            raise ConversionError(
                f"{self.target} exists and is not a folder; choose another --output", USAGE
            )
        if any(self.target.iterdir()) and not self.force:
            raise ConversionError(
                f"{self.target} is not empty; choose a new folder (such as the next version "
                "number), or pass --force to replace it",
                USAGE,
            )

    def commit(self) -> None:
        """Move the build folder into place; the target then holds exactly its files."""
        self._check()
        os.chmod(self.path, 0o755)
        _sync_tree(self.path)
        if self.target.exists() and any(self.target.iterdir()):
            self._replace()
        else:
            os.rename(self.path, self.target)  # an empty target folder is replaced in one step
        _sync(self.target.parent)
        self.committed = True

    def discard(self) -> None:
        """Remove the build folder and everything in it."""
        shutil.rmtree(self.path, ignore_errors=True)

    def _replace(self) -> None:
        if _exchange(self.path, self.target):
            shutil.rmtree(self.path, ignore_errors=True)  # now the old folder
            return
        aside = Path(
            tempfile.mkdtemp(prefix=f".{self.target.name}.", suffix=".old", dir=self.target.parent)
        )
        os.rename(self.target, aside / "old")
        os.rename(self.path, self.target)
        shutil.rmtree(aside, ignore_errors=True)


def _exchange(first: Path, second: Path) -> bool:
    """Swap two paths atomically; False where the system or file system cannot."""
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    renameat2.argtypes = [
        ctypes.c_int,
        ctypes.c_char_p,
        ctypes.c_int,
        ctypes.c_char_p,
        ctypes.c_uint,
    ]
    renameat2.restype = ctypes.c_int
    done = renameat2(
        _AT_FDCWD, os.fsencode(first), _AT_FDCWD, os.fsencode(second), _RENAME_EXCHANGE
    )
    if done == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
        return False
    raise OSError(code, os.strerror(code), str(second))


def _sync_tree(folder: Path) -> None:
    """Flush every file under ``folder`` and the folders themselves to disk."""
    for dirpath, _dirs, files in os.walk(folder):
        for name in files:
            _sync(Path(dirpath) / name)
        _sync(Path(dirpath))


def _sync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
