#!/usr/bin/env python3
"""Generate the Python code of KubeEdge's DMI API from schemas/dmi/v1beta1/api.proto.

Run by scripts/setup (every run; it does nothing when the generated files are newer than the .proto)
and by setup.py when a wheel is built, so that the generated files never need to be committed: the
.proto is the one source. The messages and stubs come from grpcio-tools; their type stubs (.pyi) from
mypy-protobuf, where its protoc plugins are installed (the dev extra): grpcio-tools' own ``--pyi_out``
types only the messages, and ``mypy --strict`` would then see every stub and servicer call as untyped.

    scripts/gen_dmi.py           generate what is out of date
    scripts/gen_dmi.py --force   generate again
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO = Path("schemas/dmi/v1beta1/api.proto")
GENERATED = ("api_pb2.py", "api_pb2_grpc.py")
STUBS = ("api_pb2.pyi", "api_pb2_grpc.pyi")


def _plugin(name: str) -> str | None:
    """mypy-protobuf's plugin of this interpreter's environment, if mypy-protobuf is installed in it (a wheel's
    isolated build has only the build requirements: no stubs there, and none are needed to run)."""
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.exists() and importlib.util.find_spec("mypy_protobuf") is not None else None


def generate(root: Path = ROOT, force: bool = False) -> list[Path]:
    """The files written (none when all were up to date)."""
    proto = root / PROTO
    out_dir = proto.parent
    mypy, mypy_grpc = _plugin("protoc-gen-mypy"), _plugin("protoc-gen-mypy_grpc")
    wanted = [out_dir / name for name in GENERATED + (STUBS if mypy and mypy_grpc else ())]
    newest_input = proto.stat().st_mtime
    if not force and all(path.exists() and path.stat().st_mtime >= newest_input for path in wanted):
        return []
    from grpc_tools import protoc  # noqa: PLC0415  (only when there is something to generate)

    include = Path(protoc.__file__).parent / "_proto"  # google/protobuf/any.proto, shipped with grpcio-tools
    args = ["protoc", f"-I{root}", f"-I{include}", f"--python_out={root}", f"--grpc_python_out={root}"]
    if mypy and mypy_grpc:
        args += [f"--plugin=protoc-gen-mypy={mypy}", f"--plugin=protoc-gen-mypy_grpc={mypy_grpc}",
                 f"--mypy_out={root}", f"--mypy_grpc_out={root}"]
    args.append(str(PROTO))
    # protoc resolves the .proto against -I, so the generated modules import each other as schemas.dmi.v1beta1.
    code = subprocess.run([sys.executable, "-m", "grpc_tools.protoc", *args[1:]], cwd=root, check=False).returncode
    if code != 0:
        raise SystemExit(f"gen_dmi: protoc failed on {proto} (exit {code})")
    return wanted


if __name__ == "__main__":
    written = generate(force="--force" in sys.argv[1:])
    print(f"generated {', '.join(str(p.relative_to(ROOT)) for p in written)}" if written
          else f"{PROTO.parent}/: generated code up to date")
