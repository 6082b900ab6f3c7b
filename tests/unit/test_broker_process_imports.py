"""The node's two broker-side processes load only what they run on (issue 19, the edge node's footprint).

The bridge runs on paho alone: the embedded broker (amqtt, with asyncio, websockets and dacite) was more than a
quarter of its import-time memory when its command shared a module with the broker's. The embedded broker runs on
amqtt: the bus (runtime.bus, runtime.connection, paho, msgpack) is the components', not its.

Each process is the real ``python -m`` command up to its argument parser (``--help``), in a fresh
interpreter that prints ``sys.modules`` as it exits: everything the command imports before it would start.
lint-imports checks the static imports; this checks what a start really loads, imports made while running
the module included.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MARK = "modules at exit: "

LOADED_AT_EXIT = f"""
import atexit, json, runpy, sys
atexit.register(lambda: print({MARK!r} + json.dumps(sorted(sys.modules)), file=sys.stderr))
sys.argv = [sys.argv[1], "--help"]
runpy.run_module(sys.argv[0], run_name="__main__", alter_sys=True)
"""


def _loaded(module: str) -> set[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-c", LOADED_AT_EXIT, module], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "usage:" in proc.stdout  # it got as far as its parser
    line = next(line for line in proc.stderr.splitlines() if line.startswith(MARK))
    return set(json.loads(line.removeprefix(MARK)))


def _under(modules: set[str], packages: tuple[str, ...]) -> list[str]:
    return sorted(m for m in modules if any(m == p or m.startswith(p + ".") for p in packages))


@pytest.mark.parametrize(("module", "must_not_load"), [
    ("broker.bridge", ("amqtt", "broker.embedded", "broker.cli", "websockets", "asyncio")),
    ("broker", ("paho", "runtime.bus", "runtime.connection", "msgpack")),
])
def test_broker_process_loads_only_what_it_runs_on(module: str, must_not_load: tuple[str, ...]) -> None:
    loaded = _loaded(module)
    assert _under(loaded, must_not_load) == []


def test_the_native_bridge_sections_load_no_paho() -> None:
    """The stack and ``--mosquitto-config`` write the native bridge's sections in processes that must not load paho."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    code = ("import json, sys, broker.nativebridge, broker.bridgesettings, broker.mosquitto; "
            "print(json.dumps(sorted(sys.modules)))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=60, check=True)
    loaded = set(json.loads(proc.stdout))
    assert "broker.nativebridge" in loaded
    assert _under(loaded, ("paho", "runtime.connection", "runtime.bus")) == []
