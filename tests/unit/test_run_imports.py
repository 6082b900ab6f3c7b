"""A component started by ``edgehive run NAME`` (every container's command) loads no module that ``python -m``
does not load for it: the CLI's other commands, their libraries and the benchmarks stay out of its process.

Each side runs in a fresh interpreter and stops at the moment the component's main starts (its call of
``run_component``), printing ``sys.modules``: the same moment, the same interpreter flags, so the two sets
compare like with like.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from edgehive.run import MODULES

ROOT = Path(__file__).resolve().parents[2]
LAUNCHER = {"edgehive", "edgehive.cli", "edgehive.run"}  # what ``edgehive run`` is: the only modules it may add

STOP_AT_MAIN = """
import json, sys
import runtime.component

def stop(*args, **kwargs):
    print(json.dumps({"main": sys.modules["__main__"].__spec__.name, "modules": sorted(sys.modules)}))
    raise SystemExit(0)

runtime.component.run_component = stop
"""
VIA_CLI = STOP_AT_MAIN + """
from edgehive.cli import main
main(["run", sys.argv[1]])
"""
VIA_PYTHON_M = STOP_AT_MAIN + """
import runpy
runpy.run_module(sys.argv[2], run_name="__main__", alter_sys=True)
"""


def _start(code: str, component: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    return subprocess.Popen([sys.executable, "-c", code, component, MODULES[component]], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _modules(proc: subprocess.Popen[str], component: str) -> set[str]:
    """What was loaded when the component's main started; it must have got that far."""
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    loaded = json.loads(out)
    assert loaded["main"] == f"{MODULES[component]}.__main__"
    return set(loaded["modules"])


# What the CLI adds before the component's module is the same for every component: the lightest of each side
# (the least the CLI must fit in) is the strictest test.
@pytest.mark.parametrize("component", ["eventbus", "cloudhub"])
def test_edgehive_run_loads_no_more_than_python_m(component: str) -> None:
    via_cli, via_python_m = _start(VIA_CLI, component), _start(VIA_PYTHON_M, component)  # side by side: faster
    cli_modules, python_m_modules = _modules(via_cli, component), _modules(via_python_m, component)
    assert cli_modules - LAUNCHER <= python_m_modules, sorted(cli_modules - LAUNCHER - python_m_modules)
