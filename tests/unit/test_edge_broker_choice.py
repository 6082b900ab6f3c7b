"""The node's broker that ``edgehive up`` and ``edgehive edge`` run (``--edge-broker``): its command line, with the
same listener and device rules on either kind."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from broker.launch import mosquitto_binary
from edgehive.stack import DEFAULT_EDGE_BROKER, EDGE_BROKERS, edge_broker_argv
from runtime.address import Address

EDGE = Address("127.0.0.1", 41884)


def test_mosquitto_is_the_default_and_amqtt_the_other_choice() -> None:
    assert DEFAULT_EDGE_BROKER == "mosquitto"
    assert set(EDGE_BROKERS) == {"mosquitto", "amqtt"}


def test_amqtt_is_the_embedded_broker_with_the_options_as_given(tmp_path: Path) -> None:
    argv = edge_broker_argv("amqtt", EDGE, ("--device-listen", "0.0.0.0:1885"), tmp_path)
    assert argv == [sys.executable, "-m", "broker", "--listen", str(EDGE), "--device-listen", "0.0.0.0:1885"]
    assert not any(tmp_path.iterdir())  # nothing written: amqtt takes its options on the command line


def test_mosquitto_gets_a_configuration_with_the_nodes_listener_anonymous_on_it(tmp_path: Path) -> None:
    argv = edge_broker_argv("mosquitto", EDGE, (), tmp_path)
    assert argv[:2] == [mosquitto_binary(), "-c"]
    conf = Path(argv[2]).read_text()
    assert f"listener {EDGE.port} {EDGE.host}" in conf
    assert "allow_anonymous true" in conf
    assert Path(argv[2]).parent.parent == tmp_path


def test_mosquitto_takes_the_device_listener_with_its_users_and_topic_rules(tmp_path: Path) -> None:
    users = tmp_path / "devices.passwd"
    users.write_text("dev1:$7$101$c2FsdA==$aGFzaA==\n")
    argv = edge_broker_argv("mosquitto", EDGE, ("--device-listen", "0.0.0.0:1885", "--device-password-file",
                                                 str(users)), tmp_path / "broker")
    conf = Path(argv[2]).read_text()
    device_listener = conf[conf.index("listener 1885 0.0.0.0"):]
    assert "allow_anonymous false" in device_listener
    assert (tmp_path / "broker" / "mosquitto" / "device-acl").read_text().endswith("pattern readwrite $hw/events/#\n")
    assert (tmp_path / "broker" / "mosquitto" / "devices").read_text() == users.read_text()


def test_a_device_listener_without_users_is_refused_on_mosquitto_as_on_amqtt(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="--device-listen needs --device-password-file"):
        edge_broker_argv("mosquitto", EDGE, ("--device-listen", "0.0.0.0:1885"), tmp_path)


def test_an_unknown_kind_is_refused_by_name(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="edge broker 'nats' is not one of mosquitto, amqtt"):
        edge_broker_argv("nats", EDGE, (), tmp_path)
