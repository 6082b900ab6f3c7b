"""The layer contracts of pyproject.toml hold for the tree, and an import that breaks one fails the lint step."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("schemas", "runtime", "broker", "cloud", "edge", "edgehive")


def lint_imports(tree: Path) -> subprocess.CompletedProcess[str]:
    """Run ``lint-imports`` on ``tree`` with its packages first on the path (not the installed ones)."""
    command = Path(sys.executable).with_name("lint-imports")
    env = {**os.environ, "PYTHONPATH": str(tree)}
    return subprocess.run([str(command), "--config", str(tree / "pyproject.toml"), "--no-cache"],
                          cwd=tree, env=env, capture_output=True, text=True, timeout=120, check=False)


def copy_tree(destination: Path) -> Path:
    shutil.copy(ROOT / "pyproject.toml", destination / "pyproject.toml")
    for package in PACKAGES:
        shutil.copytree(ROOT / package, destination / package, ignore=shutil.ignore_patterns("__pycache__"))
    return destination


def test_the_tree_keeps_every_contract(tmp_path: Path) -> None:
    result = lint_imports(copy_tree(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@dataclass(frozen=True)
class Break:
    """Lines appended to files of a copy of the tree (a file not there is made), and what lint-imports must
    then say: the broken contract's line, and the import that broke it."""

    appended: dict[str, str]
    contract: str
    chain: str | None = None


BREAKS = {
    "cloud importing edge breaks the layers": Break(
        {"cloud/reaches_edge.py": "from edge import linkstate\n"},
        "layers: edgehive > cloud | edge | broker > runtime > schemas BROKEN", "cloud.reaches_edge -> edge.linkstate"),
    "a component importing paho breaks the transport rule": Break(
        {"edge/edged/direct.py": "import paho.mqtt.client\n"},
        "only the connection (and mosquitto's $SYS reader) import paho-mqtt BROKEN"),
    "the PKI leaf importing a runtime module the contract does not name breaks its rule": Break(
        {"runtime/later.py": "VALUE = 1\n", "runtime/pki.py": "\nfrom runtime import later  # noqa: E402\n"},
        "the PKI helpers are a leaf", "runtime.pki -> runtime.later"),
    "one component importing another breaks their independence": Break(
        {"edge/edged/peeks.py": "from edge.metamanager import store\n"},
        "components never import each other BROKEN", "edge.edged.peeks -> edge.metamanager.store"),
}


@pytest.mark.parametrize("case", sorted(BREAKS))
def test_an_import_that_breaks_a_contract_fails_the_lint_step(case: str, tmp_path: Path) -> None:
    tree, broken = copy_tree(tmp_path), BREAKS[case]
    for path, text in broken.appended.items():
        with (tree / path).open("a") as out:
            out.write(text)
    result = lint_imports(tree)
    assert result.returncode == 1
    assert broken.contract in result.stdout
    if broken.chain is not None:
        assert broken.chain in result.stdout
