"""Settings precedence: flag over environment over file over default, with errors that say what to do."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from runtime import settings
from runtime.component import ComponentSettings


@dataclass(frozen=True)
class Example:
    name: str
    port: int = 1883
    debug: bool = False
    peers: tuple[str, ...] = ()
    ca: str | None = field(default=None, metadata={"help": "a CA file"})


def load(argv: list[str], env: dict[str, str] | None = None) -> Example:
    parser = argparse.ArgumentParser()
    settings.add_arguments(parser, Example)
    return settings.load(Example, parser.parse_args(argv), env or {})


def test_precedence(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("name: from-file\nport: 1\ndebug: true\npeers: [a, b]\n")
    assert load(["--config", str(config)]) == Example("from-file", 1, True, ("a", "b"))
    env = {"EDGEHIVE_PORT": "2", "EDGEHIVE_PEERS": "x,y", "EDGEHIVE_NAME": "from-env"}
    assert load(["--config", str(config)], env) == Example("from-env", 2, True, ("x", "y"))
    assert load(["--config", str(config), "--port", "3", "--no-debug", "--peers", "p"], env) == \
        Example("from-env", 3, False, ("p",))
    assert load([], {"EDGEHIVE_CONFIG": str(config)}).name == "from-file"


def test_errors_name_the_setting_and_the_fix(tmp_path: Path) -> None:
    with pytest.raises(settings.SettingsError, match="setting name is required: pass --name, set EDGEHIVE_NAME"):
        load([])
    with pytest.raises(settings.SettingsError, match="setting port from EDGEHIVE_PORT"):
        load(["--name", "n"], {"EDGEHIVE_PORT": "many"})
    with pytest.raises(settings.SettingsError, match="is not a boolean"):
        load(["--name", "n"], {"EDGEHIVE_DEBUG": "maybe"})
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: n\nprot: 1\n")
    with pytest.raises(settings.SettingsError, match="unknown settings: prot"):
        load(["--config", str(bad)])
    with pytest.raises(settings.SettingsError, match="cannot read settings file"):
        load(["--config", str(tmp_path / "missing.yaml")])


def test_component_settings_validate() -> None:
    with pytest.raises(ValueError, match="not a valid node name"):
        ComponentSettings(node="Bad Node")
    with pytest.raises(ValueError, match="mqtt:// or mqtts://"):
        ComponentSettings(broker="http://x")
    assert ComponentSettings(node="edge-7").node == "edge-7"
