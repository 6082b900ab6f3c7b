"""The layer contracts of pyproject.toml hold for the tree, and an import that breaks one fails the lint step."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

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


def test_cloud_importing_edge_breaks_the_layers(tmp_path: Path) -> None:
    tree = copy_tree(tmp_path)
    (tree / "cloud" / "reaches_edge.py").write_text("from edge import linkstate\n")
    result = lint_imports(tree)
    assert result.returncode == 1
    assert "layers: edgehive > cloud | edge | broker > runtime > schemas BROKEN" in result.stdout
    assert "cloud.reaches_edge -> edge.linkstate" in result.stdout


def test_a_component_importing_paho_breaks_the_transport_rule(tmp_path: Path) -> None:
    tree = copy_tree(tmp_path)
    (tree / "edge" / "edged" / "direct.py").write_text("import paho.mqtt.client\n")
    result = lint_imports(tree)
    assert result.returncode == 1
    assert "only the connection (and mosquitto's $SYS reader) import paho-mqtt BROKEN" in result.stdout
