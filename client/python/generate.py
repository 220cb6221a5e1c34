"""Regenerates the gRPC stubs in src/sieve/v1 from ../../proto with grpcio-tools.

    python generate.py           write the stubs
    python generate.py --check   exit 1 if the committed stubs differ from freshly generated ones

The proto package `sieve.v1` becomes the Python package `sieve.v1`, inside this SDK's `sieve`
package, so the generated imports (`from sieve.v1 import common_pb2`) resolve as they are.
"""

import argparse
import filecmp
import pathlib
import shutil
import sys
import tempfile

from grpc_tools import protoc

HERE = pathlib.Path(__file__).resolve().parent
PROTO = HERE.parent.parent / "proto"
TARGET = HERE / "src" / "sieve" / "v1"
INIT = '"""Generated from proto/sieve/v1 by client/python/generate.py; do not edit."""\n'


def generate(out: pathlib.Path) -> None:
    protos = sorted(str(p.relative_to(PROTO)) for p in (PROTO / "sieve" / "v1").glob("*.proto"))
    include = pathlib.Path(protoc.__file__).parent / "_proto"
    args = ["protoc", f"-I{PROTO}", f"-I{include}", f"--python_out={out}", f"--pyi_out={out}",
            f"--grpc_python_out={out}", *protos]
    if protoc.main(args) != 0:
        sys.exit("protoc failed")
    (out / "sieve" / "v1" / "__init__.py").write_text(INIT)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--check", action="store_true")
    check = parser.parse_args().check
    with tempfile.TemporaryDirectory() as tmp:
        out = pathlib.Path(tmp)
        generate(out)
        fresh = out / "sieve" / "v1"
        names = sorted(p.name for p in fresh.iterdir())
        if check:
            committed = sorted(p.name for p in TARGET.iterdir() if p.suffix in (".py", ".pyi"))
            _, differ, missing = filecmp.cmpfiles(fresh, TARGET, names, shallow=False)
            extra = sorted(set(committed) - set(names))
            if differ or missing or extra:
                sys.exit(f"stubs in {TARGET} are stale (differ: {differ}, missing: {missing}, "
                         f"extra: {extra}); run `python client/python/generate.py`")
            print(f"{len(names)} generated files in {TARGET.relative_to(HERE)} are current")
            return
        if TARGET.exists():
            shutil.rmtree(TARGET)
        shutil.copytree(fresh, TARGET)
        print(f"wrote {len(names)} files to {TARGET}")


if __name__ == "__main__":
    main()
