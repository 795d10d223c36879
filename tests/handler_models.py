"""TorchServe-style handler files (``model.py``) for tests, written into version folders."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import yaml

#: Upper-cases each request's text; the text comes as bytes, str or a JSON value.
TEXT_HANDLER = """
import json


class TextHandler:
    def initialize(self, context):
        self.model_dir = context.system_properties["model_dir"]
        self.manifest = context.manifest

    def handle(self, data, context):
        answers = []
        for request in data:
            value = request.get("data") or request.get("body")
            if isinstance(value, (bytes, bytearray)):
                value = value.decode("utf-8")
            elif not isinstance(value, str):
                value = json.dumps(value)
            answers.append(value.upper())
        return answers
"""

#: A module-level handle(data, context) counting words, reporting the type each request had.
WORDS_HANDLER = """
from helpers import count_words

def handle(data, context):
    if data is None:
        return None
    answers = []
    for request in data:
        value = request["body"]
        text = value["text"] if isinstance(value, dict) else value
        if isinstance(text, (bytes, bytearray)):
            text = bytes(text).decode("utf-8")
        answers.append({"words": count_words(text), "kind": type(value).__name__})
    return answers
"""

#: The sibling module WORDS_HANDLER imports.
WORDS_HELPERS = """
def count_words(text):
    return len(text.split())
"""

#: preprocess / inference / postprocess: each request's text gives [length, vowel count].
STAGED_HANDLER = """
import numpy as np


class Stats:
    def preprocess(self, data):
        return [bytes(request["data"]).decode("utf-8") for request in data]

    def inference(self, texts):
        return np.array([[len(t), sum(c in "aeiou" for c in t)] for t in texts], dtype=np.float32)

    def postprocess(self, matrix):
        return [row for row in matrix]
"""

#: config.yaml for STAGED_HANDLER: a declared FP32 output.
STAGED_CONFIG: dict[str, Any] = {
    "outputs": [{"name": "stats", "datatype": "FP32", "shape": [-1, 2]}],
}

#: A BaseHandler subclass running the TorchScript ``model.pt`` beside it on JSON rows of 4 floats.
TORCH_HANDLER = """
import json
import os

import torch
from ts.torch_handler.base_handler import BaseHandler


class RowsHandler(BaseHandler):
    def initialize(self, context):
        self.manifest = context.manifest
        model_dir = context.system_properties["model_dir"]
        self.model = torch.jit.load(os.path.join(model_dir, "model.pt"))
        self.model.eval()
        self.initialized = True

    def preprocess(self, data):
        rows = []
        for request in data:
            value = request.get("data") or request.get("body")
            if isinstance(value, (bytes, bytearray)):
                value = json.loads(value) if value else [0.0, 0.0, 0.0, 0.0]
            rows.append(value)
        return torch.tensor(rows, dtype=torch.float32)

    def inference(self, data, *args, **kwargs):
        with torch.inference_mode():
            return self.model(data)

    def postprocess(self, data):
        return data.tolist()
"""

#: Answers each request with the number of requests in its batch. A request ``hold`` writes
#: ``holding`` into the model folder and waits for a ``release`` file there, so that the requests
#: sent meanwhile queue up and reach the handler together.
BATCH_SIZE_HANDLER = """
import os
import time


class BatchSize:
    def initialize(self, context):
        self.folder = context.system_properties["model_dir"]

    def handle(self, data, context):
        if any(request["data"] == b"hold" for request in data):
            open(os.path.join(self.folder, "holding"), "w").close()
            deadline = time.monotonic() + 60
            while not os.path.exists(os.path.join(self.folder, "release")):
                if time.monotonic() > deadline:
                    raise TimeoutError("no release file within 60 s")
                time.sleep(0.01)
        return [len(data)] * len(data)
"""


#: Two handler classes: the server cannot tell which one to serve.
TWO_HANDLERS = """
class First:
    def handle(self, data, context):
        return ["first"] * len(data)


class Second:
    def handle(self, data, context):
        return ["second"] * len(data)
"""

#: A file with no handler at all.
NO_HANDLER = """
VALUE = 1

def helper(x):
    return x
"""

#: initialize() fails, as a handler whose weights are missing does.
FAILING_INITIALIZE = """
class Broken:
    def initialize(self, context):
        raise FileNotFoundError("weights.bin is missing from the model folder")

    def handle(self, data, context):
        return data
"""

#: Returns one result too few.
WRONG_COUNT = """
class Short:
    def handle(self, data, context):
        return ["x"] * (len(data) - 1)
"""


def write_handler(
    version_dir: Path,
    source: str,
    filename: str = "model.py",
    extra: dict[str, str] | None = None,
) -> Path:
    """Write a handler file (and sibling files) into ``version_dir``; return the handler's path."""
    version_dir.mkdir(parents=True, exist_ok=True)
    path = version_dir / filename
    path.write_text(textwrap.dedent(source).lstrip())
    for name, text in (extra or {}).items():
        (version_dir / name).write_text(textwrap.dedent(text).lstrip())
    return path


def write_config(model_dir: Path, config: dict[str, Any]) -> None:
    """Write ``config.yaml`` for the model folder."""
    model_dir.mkdir(parents=True, exist_ok=True)
    (model_dir / "config.yaml").write_text(yaml.safe_dump(config))


def text_rows(*texts: str) -> np.ndarray[Any, Any]:
    """A BYTES tensor with one row per text."""
    arr = np.empty(len(texts), dtype=object)
    arr[:] = [t.encode() for t in texts]
    return arr


def stats(text: str) -> list[float]:
    """What STAGED_HANDLER computes for one text."""
    return [float(len(text)), float(sum(c in "aeiou" for c in text))]


#: A BaseHandler subclass for a .mar: BaseHandler.initialize loads the archive's serializedFile
#: (TorchScript), BaseHandler.inference and postprocess run it; only preprocess is its own.
MAR_HANDLER = """
import json

import torch
from ts.torch_handler.base_handler import BaseHandler


class JsonRowsHandler(BaseHandler):
    def preprocess(self, data):
        rows = []
        for request in data:
            value = request.get("data") or request.get("body")
            if isinstance(value, (bytes, bytearray)):
                value = json.loads(value) if value else [0.0, 0.0, 0.0, 0.0]
            rows.append(value)
        return torch.tensor(rows, dtype=torch.float32)
"""


def build_mar(work: Path, serialized: Path, name: str, export_path: Path) -> Path:
    """Run the real ``torch-model-archiver`` on ``serialized`` and MAR_HANDLER; return the .mar."""
    import subprocess
    import sys

    handler = write_handler(work, MAR_HANDLER, filename="handler.py")
    archiver = Path(sys.executable).with_name("torch-model-archiver")
    export_path.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [
            str(archiver),
            "--model-name",
            name,
            "--version",
            "1.0",
            "--serialized-file",
            str(serialized),
            "--handler",
            str(handler),
            "--export-path",
            str(export_path),
            "--force",
        ],
        check=True,
        capture_output=True,
    )
    return export_path / f"{name}.mar"


def write_zip_slip_mar(path: Path) -> Path:
    """A .mar with a valid manifest and an entry that climbs out of the extraction folder."""
    import json
    import zipfile

    path.parent.mkdir(parents=True, exist_ok=True)
    manifest = {"runtime": "python", "model": {"modelName": "evil", "handler": "handler.py"}}
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("MAR-INF/MANIFEST.json", json.dumps(manifest))
        archive.writestr("handler.py", "def handle(data, context):\n    return data\n")
        archive.writestr("../escaped.py", "raise SystemExit('escaped')\n")
    return path
