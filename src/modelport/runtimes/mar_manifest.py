"""``MAR-INF/MANIFEST.json``, the description torch-model-archiver writes into every ``.mar``.

The file looks like this (torch-model-archiver 0.12)::

    {
      "createdOn": "22/11/2026 02:50:07",
      "runtime": "python",
      "model": {
        "modelName": "mnist",
        "serializedFile": "model.pt",
        "handler": "handler.py",
        "modelFile": "net.py",
        "modelVersion": "1.0",
        "requirementsFile": "requirements.txt",
        "configFile": "model-config.yaml"
      },
      "archiverVersion": "0.12.0"
    }

``modelName`` and ``handler`` are required; the file names are optional, but each one given must
be a file in the archive. The handler is either a Python file in the archive (``handler.py``, or
``handler:function`` for a function entry point) or one of TorchServe's built-in handlers
(``image_classifier``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from modelport.errors import ModelLoadError

__all__ = [
    "BUILTIN_HANDLERS",
    "MANIFEST_PATH",
    "MAX_MANIFEST_BYTES",
    "MarManifest",
    "read_manifest",
    "relative_parts",
]

MANIFEST_PATH = "MAR-INF/MANIFEST.json"

#: A manifest is a few hundred bytes; anything much larger is not one.
MAX_MANIFEST_BYTES = 1 << 20

#: The handler modules of ``ts.torch_handler`` a manifest may name instead of a file: those
#: torch-model-archiver 0.12 knows, and the other handler modules TorchServe 0.12 ships.
BUILTIN_HANDLERS = frozenset(
    {
        "base_handler",
        "dali_image_classifier",
        "densenet_handler",
        "image_classifier",
        "image_segmenter",
        "object_detector",
        "text_classifier",
        "text_handler",
        "trt_llm_handler",
        "vision_handler",
        "vllm_handler",
    }
)

#: Runtime names of TorchServe's Python back end; others (``LSP``) are its C++ back end.
_PYTHON_RUNTIMES = frozenset({"python", "python3"})

#: The manifest keys that name a file in the archive, with the archiver flag that sets each.
_FILE_KEYS = {
    "serializedFile": "--serialized-file",
    "modelFile": "--model-file",
    "requirementsFile": "--requirements-file",
    "configFile": "--config-file",
}

_RECREATE = "re-create the archive with torch-model-archiver"


def relative_parts(name: str) -> tuple[str, ...]:
    """The folder components of an archive member name, refusing names that could escape.

    Raises ValueError, worded to follow the name (``'../x' has a '..' component``), for an
    empty name, a NUL byte or other control character, a backslash, an absolute path, a drive
    letter, a ``..`` component or one over 255 bytes. Empty and ``.`` components are dropped.
    """
    if "\x00" in name:
        raise ValueError("contains a NUL byte")
    if any(ord(char) < 0x20 or char == "\x7f" for char in name):
        raise ValueError("contains a control character")
    if "\\" in name:
        raise ValueError("contains a backslash, which Windows reads as a folder separator")
    if name.startswith("/"):
        raise ValueError("is an absolute path")
    if name[1:2] == ":" and name[:1].isascii() and name[:1].isalpha():
        raise ValueError("starts with a drive letter")
    parts = tuple(part for part in name.split("/") if part not in ("", "."))
    if ".." in parts:
        raise ValueError("has a '..' component, which points outside the extraction folder")
    if not parts:
        raise ValueError("is an empty name")
    if any(len(part.encode()) > 255 for part in parts):
        raise ValueError("has a component longer than 255 bytes, which no file system takes")
    return parts


@dataclass(frozen=True, slots=True)
class MarManifest:
    """The validated content of an archive's ``MAR-INF/MANIFEST.json``.

    File names are relative to the folder the archive was extracted into; ``raw`` is the whole
    JSON document, as TorchServe hands it to the handler in ``context.manifest``.
    """

    model_name: str
    handler: str
    builtin_handler: bool = False
    """True when ``handler`` names a module of ``ts.torch_handler``, not a file in the archive."""
    runtime: str = "python"
    serialized_file: str | None = None
    model_file: str | None = None
    model_version: str | None = None
    requirements_file: str | None = None
    config_file: str | None = None
    created_on: str | None = None
    archiver_version: str | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False, repr=False)

    @property
    def handler_module(self) -> str:
        """The module TorchServe imports: ``handler.py`` and ``handler:fn`` give ``handler``."""
        return _handler_module(self.handler)

    @property
    def handler_function(self) -> str | None:
        """The entry-point function after ``:`` in the handler, or None for a handler class."""
        _, _, function = self.handler.partition(":")
        return function or None


def read_manifest(folder: Path, source: str | None = None) -> MarManifest:
    """Read and check ``MAR-INF/MANIFEST.json`` in an extracted archive ``folder``.

    ``source`` names the archive in error messages (default: the folder's name). Works as well
    on the folder ``torch-model-archiver --archive-format no-archive`` writes. Raises
    ``ModelLoadError`` saying what is wrong and what to do.
    """
    label = source or folder.name
    path = folder.joinpath(*MANIFEST_PATH.split("/"))
    if not path.is_file():
        raise _error(label, "is missing", f"every archive needs one; {_RECREATE}")
    if path.stat().st_size > MAX_MANIFEST_BYTES:
        raise _error(label, f"is larger than {MAX_MANIFEST_BYTES} bytes", _RECREATE)
    try:
        document = json.loads(path.read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise _error(label, f"is not valid JSON ({exc})", _RECREATE) from exc
    return _parse(document, folder, label)


def _parse(document: Any, folder: Path, label: str) -> MarManifest:
    if not isinstance(document, dict):
        raise _error(label, "must hold a JSON object", _RECREATE)
    model = document.get("model")
    if not isinstance(model, dict):
        raise _error(label, 'has no "model" object', _RECREATE)
    runtime = _text(document, "runtime", label) or "python"
    if runtime not in _PYTHON_RUNTIMES:
        raise _error(
            label,
            f'names runtime "{runtime}", which is not TorchServe\'s Python back end',
            f"modelport runs Python handlers only; {_RECREATE} --runtime python",
        )
    files = {key: _text(model, key, label, "model.") for key in _FILE_KEYS}
    for key, value in files.items():
        if value is not None:
            _check_file(folder, key, value, label)
    handler = _required(model, "handler", label)
    return MarManifest(
        model_name=_required(model, "modelName", label),
        handler=handler,
        builtin_handler=_handler_is_builtin(folder, handler, label),
        runtime=runtime,
        serialized_file=files["serializedFile"],
        model_file=files["modelFile"],
        model_version=_text(model, "modelVersion", label, "model."),
        requirements_file=files["requirementsFile"],
        config_file=files["configFile"],
        created_on=_text(document, "createdOn", label),
        archiver_version=_text(document, "archiverVersion", label),
        raw=MappingProxyType(document),
    )


def _text(section: dict[str, Any], key: str, label: str, prefix: str = "") -> str | None:
    value = section.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        kind = type(value).__name__
        raise _error(label, f"gives {prefix}{key} as {kind}, not a string", _RECREATE)
    return value


def _required(model: dict[str, Any], key: str, label: str) -> str:
    value = _text(model, key, label, "model.")
    if not value:
        raise _error(label, f"has no model.{key}", _RECREATE)
    return value


def _check_file(folder: Path, key: str, value: str, label: str) -> None:
    flag = _FILE_KEYS[key]
    try:
        parts = relative_parts(value)
    except ValueError as exc:
        raise _error(label, f"gives model.{key} {value!r}, which {exc}", _RECREATE) from None
    if not folder.joinpath(*parts).is_file():
        raise _error(
            label,
            f"names model.{key} {value!r}, which is not in the archive",
            f"{_RECREATE}, passing the file with {flag}",
        )


def _handler_module(handler: str) -> str:
    module = handler.partition(":")[0]
    return module.removesuffix(".py")


def _handler_is_builtin(folder: Path, handler: str, label: str) -> bool:
    module = _handler_module(handler)
    if module and "/" not in module and "\\" not in module:
        if (folder / f"{module}.py").is_file():
            return False
        if module.removeprefix("ts.torch_handler.") in BUILTIN_HANDLERS:
            return True
    builtins = ", ".join(sorted(BUILTIN_HANDLERS))
    raise _error(
        label,
        f"names model.handler {handler!r}, which is neither a file in the archive "
        f"({module}.py) nor one of TorchServe's built-in handlers ({builtins})",
        f"{_RECREATE}, passing your handler file with --handler",
    )


def _error(label: str, problem: str, advice: str) -> ModelLoadError:
    return ModelLoadError(f"model archive {label}: {MANIFEST_PATH} {problem}; {advice}")
