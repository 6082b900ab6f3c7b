"""``edgehive up --status-object``: the choices are DeviceController's own, and a wrong one fails in the CLI."""

from __future__ import annotations

import argparse

import pytest

from cloud.devicecontroller.statusobject import DEFAULT, STATUS_OBJECTS
from edgehive.up_cli import add_up_arguments


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser()
    add_up_arguments(parser)
    return parser


def test_the_choices_and_default_are_devicecontrollers() -> None:
    (action,) = [a for a in _parser()._actions if "--status-object" in a.option_strings]
    assert tuple(action.choices or ()) == STATUS_OBJECTS
    assert action.default == DEFAULT
    assert _parser().parse_args(["--status-object", "devicestatus"]).status_object == "devicestatus"


def test_an_unknown_status_object_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        _parser().parse_args(["--status-object", "devicestatuses"])
    assert "--status-object" in capsys.readouterr().err
