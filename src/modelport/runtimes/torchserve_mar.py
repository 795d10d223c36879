"""TorchServe model archives (platform ``torchserve``): a ``.mar`` run by its own handler.

The archive in the version folder (the only ``*.mar``, or ``*.tar.gz`` from the archiver's tgz
format, or the file ``default_model_filename`` names) is extracted safely (see ``mar_archive``,
with the limits of ``config.yaml``'s ``archive:``) into a temporary folder of its own, outside the
model repository, which is removed when the version unloads. The handler the manifest names, a
file in the archive (``handler.py``, or ``handler.py:function``) or one of TorchServe's built-in
handlers (``image_classifier`` ...), is then loaded as a Python handler (see ``python_handler``):
TorchServe's ``Context`` carries the archive's own manifest and ``model_dir`` is the extracted
folder, so ``BaseHandler.initialize`` finds the ``serializedFile`` or ``modelFile`` it loads.
"""

from __future__ import annotations

import importlib
import logging
import shutil
import tempfile
import warnings
from dataclasses import replace
from functools import partial
from pathlib import Path
from types import ModuleType

from modelport.errors import ModelLoadError
from modelport.runtimes.base import RuntimeOptions
from modelport.runtimes.mar_archive import extract_archive, find_archive
from modelport.runtimes.mar_manifest import MarManifest
from modelport.runtimes.python_handler import PythonHandlerRuntime

__all__ = ["TorchServeArchiveRuntime"]

log = logging.getLogger(__name__)


class TorchServeArchiveRuntime(PythonHandlerRuntime):
    """A ``.mar`` archive, extracted to a temporary folder and run by its own handler."""

    platform = "torchserve"
    default_model_filename = "model.mar"

    @classmethod
    def find_model_file(cls, version_dir: Path, filename: str | None) -> Path | None:
        return find_archive(version_dir, filename)

    @classmethod
    def load(
        cls, model_path: Path, options: RuntimeOptions, context: str = ""
    ) -> TorchServeArchiveRuntime:
        version_dir = model_path.parent
        try:
            scratch = Path(
                tempfile.mkdtemp(prefix=f"modelport-{version_dir.parent.name}-{version_dir.name}-")
            )
        except OSError as exc:
            raise ModelLoadError(
                f"cannot create a temporary folder to extract {model_path.name} into: {exc}; "
                "check the free space and permissions of the temporary folder (TMPDIR)"
            ) from exc
        cleanup = partial(shutil.rmtree, scratch, ignore_errors=True)
        try:
            model_dir = scratch / "model"
            manifest = extract_archive(model_path, model_dir, options.archive_limits)
            builtin = (
                _builtin_handler(manifest, model_path.name) if manifest.builtin_handler else None
            )
        except BaseException:
            cleanup()
            raise
        log.info(
            "%s: extracted %s (model %s, handler %s) into %s",
            context or model_path.name,
            model_path.name,
            manifest.model_name,
            manifest.handler,
            model_dir,
        )
        handler = manifest.handler_function or options.handler
        return cls.start(
            model_dir / f"{manifest.handler_module}.py",
            model_dir,
            dict(manifest.raw),
            replace(options, handler=handler),
            context=context,
            cleanup=cleanup,
            builtin=builtin,
        )


def _builtin_handler(manifest: MarManifest, archive: str) -> ModuleType:
    """TorchServe's built-in handler module the manifest names (``image_classifier`` ...)."""
    name = manifest.handler_module.removeprefix("ts.torch_handler.")
    try:
        with warnings.catch_warnings():
            # ``import ts`` reads its version file without closing it (TorchServe's own warning).
            warnings.simplefilter("ignore", ResourceWarning)
            return importlib.import_module(f"ts.torch_handler.{name}")
    except ImportError as exc:
        raise ModelLoadError(
            f"model archive {archive} uses TorchServe's built-in handler {name!r}, which needs "
            f"TorchServe's package: pip install 'modelport[torchserve]' ({exc})"
        ) from exc
