"""Generate the Python code for protos/*.proto into src/modelport/_pb (or check it is fresh).

    python scripts/gen_protos.py            # regenerate
    python scripts/gen_protos.py --check    # exit 1 if the committed code differs

The .proto files live in protos/ and are imported as ``modelport/_pb/<path>``, so the generated
modules import each other as ``modelport._pb...``.
"""

from __future__ import annotations

import argparse
import filecmp
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTOS = ROOT / "protos"
TARGET = ROOT / "src"
PACKAGE = Path("modelport/_pb")
#: Files in the generated package that are not generated.
HAND_WRITTEN = {"_pool.py"}


def generate(out_dir: Path) -> list[Path]:
    """Run protoc (from grpcio-tools) over every .proto; return the generated files."""
    import grpc_tools
    from grpc_tools import protoc

    well_known = Path(grpc_tools.__file__).parent / "_proto"
    sources = sorted(PROTOS.rglob("*.proto"))
    args = [
        "protoc",
        f"-I{PACKAGE}={PROTOS}",
        f"-I{well_known}",
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
        *[str(PACKAGE / p.relative_to(PROTOS)) for p in sources],
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed; see the messages above")
    for module in (out_dir / PACKAGE).rglob("*_pb2.py"):
        _use_private_pool(module)
    for folder in {p.parent for p in (out_dir / PACKAGE).rglob("*_pb2.py")} | {out_dir / PACKAGE}:
        init = folder / "__init__.py"
        if not init.exists():
            init.write_text(
                '"""Generated protocol buffer code; regenerate with scripts/gen_protos.py."""\n'
            )
    return sorted(p for p in (out_dir / PACKAGE).rglob("*") if p.is_file())


def _use_private_pool(module: Path) -> None:
    """Register the module's descriptors in modelport's own pool, not protobuf's default one."""
    text = module.read_text()
    default = "_descriptor_pool.Default()"
    if default not in text:
        raise SystemExit(f"{module}: the generated code no longer uses {default}")
    text = text.replace(default, "_pool.POOL").replace(
        "# @@protoc_insertion_point(imports)",
        "# @@protoc_insertion_point(imports)\nfrom modelport._pb import _pool",
        1,
    )
    module.write_text(text)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare instead of writing")
    args = parser.parse_args()
    if not args.check:
        generate(TARGET)
        print(f"generated into {TARGET / PACKAGE}")
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        fresh = generate(Path(tmp))
        stale = []
        for path in fresh:
            committed = TARGET / path.relative_to(tmp)
            if not committed.exists() or not filecmp.cmp(path, committed, shallow=False):
                stale.append(str(committed.relative_to(ROOT)))
        extra = {
            str(p.relative_to(ROOT))
            for p in (TARGET / PACKAGE).rglob("*")
            if p.is_file() and "__pycache__" not in p.parts and p.name not in HAND_WRITTEN
        } - {str((TARGET / p.relative_to(tmp)).relative_to(ROOT)) for p in fresh}
    if stale or extra:
        print("generated protobuf code is stale; run: python scripts/gen_protos.py")
        for name in sorted(stale) + sorted(extra):
            print(f"  {name}")
        return 1
    print("generated protobuf code is fresh")
    return 0


if __name__ == "__main__":
    sys.exit(main())
