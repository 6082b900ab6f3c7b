"""``edgehive up --bridge native`` and ``edgehive edge --bridge native`` (the default on mosquitto): no bridge
process, the edge mosquitto gets the link's sections, EdgeHub and the status watch read mosquitto's raw link state;
amqtt is refused by name, and gets the Python bridge when ``--bridge`` is not said."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgehive import stack
from edgehive.cli import main
from edgehive.launcher import Child
from runtime.address import Address
from runtime.connsettings import Incoming
from runtime.url import BrokerUrl
from schemas import topics

EDGE = Address("127.0.0.1", 41884)
NODE = "edge-1"
LINES = ["connection edgehive-edge-1", "address 127.0.0.1:1883", f"topic {topics.link_up(NODE)} out 1"]


def _watch(native: bool) -> stack.StatusWatch:
    return stack.StatusWatch(BrokerUrl("127.0.0.1", 1), "watch", "watch", native_links=native)


def _names(children: list[Child]) -> list[str]:
    return [c.name for c in children]


def test_native_children_have_no_bridge_and_edgehub_follows_the_native_link(tmp_path: Path) -> None:
    watch = _watch(True)
    children = stack.edge_children(NODE, tmp_path, EDGE, watch, (), {}, bridge_lines=LINES)
    assert not any(name.startswith("bridge") for name in _names(children))
    edgehub = next(c for c in children if c.name == "edgehub")
    assert edgehub.argv[-2:] == ["--bridge", "native"]
    broker = next(c for c in children if c.name == "edge-broker")
    conf = Path(broker.argv[2]).read_text()
    assert conf.endswith("\n".join(LINES) + "\n")
    python = stack.edge_children(NODE, tmp_path, EDGE, _watch(False), (), {})
    assert f"bridge-{NODE}" in _names(python)
    assert "--bridge" not in next(c for c in python if c.name == "edgehub").argv


def test_the_native_edge_broker_is_healthy_once_its_link_is_up(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    watch = _watch(True)
    broker = next(c for c in stack.edge_children(NODE, tmp_path, EDGE, watch, (), {}, bridge_lines=LINES)
                  if c.name == "edge-broker")
    monkeypatch.setattr(type(watch.connection), "connected", property(lambda _self: True))
    assert not broker.healthy()
    watch._on_message(Incoming(topics.link_hello(NODE), b"1", 1, True, False, lambda: None))
    assert broker.healthy()


@pytest.mark.parametrize(("payload", "up"), [(b"1", True), (b"0", False), (b"junk", False)])
def test_the_watch_reads_mosquittos_raw_link_state(payload: bytes, up: bool) -> None:
    watch = _watch(True)
    watch.links[NODE] = not up
    watch._on_message(Incoming(topics.link_hello(NODE), payload, 1, True, False, lambda: None))
    assert watch.link_up(NODE) is up


def test_amqtt_cannot_carry_the_native_bridge(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"--bridge native .* needs --edge-broker mosquitto, not --edge-broker amqtt"):
        stack.edge_children(NODE, tmp_path, EDGE, _watch(True), (), {}, edge_broker="amqtt", bridge_lines=LINES)


@pytest.mark.parametrize("command", ["up", "edge"])
def test_the_cli_refuses_native_with_amqtt_by_name(command: str, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    assert main([command, "--bridge", "native", "--edge-broker", "amqtt", "--state-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "--bridge native" in err
    assert "--edge-broker amqtt" in err
    assert not any(tmp_path.iterdir())  # refused before anything was made


def test_a_joined_node_gets_its_sections_from_edge_yaml(tmp_path: Path) -> None:
    pki = tmp_path / "pki"
    (tmp_path / "edge.yaml").write_text(
        f"node: {NODE}\ncloud: mqtts://m1.example:8883,m2.example:8883\ncloud_ca: {pki}/ca.crt\n"
        f"cloud_cert: {pki}/node.crt\ncloud_key: {pki}/node.key\ndown_qos: 0\n")
    children, watches = stack.build_joined_edge(tmp_path, EDGE, bridge="native")
    assert not any(name.startswith("bridge") for name in _names(children))
    conf = Path(next(c for c in children if c.name == "edge-broker").argv[2]).read_text()
    assert "address m1.example:8883 m2.example:8883\n" in conf
    assert f"bridge_certfile {pki}/node.crt\n" in conf
    assert f"topic {topics.link_down(NODE)} in 0\n" in conf
    assert "remote_password" not in conf
    assert len(watches) == 1
    python, _ = stack.build_joined_edge(tmp_path, EDGE, bridge="python")
    assert f"bridge-{NODE}" in _names(python)
    unsaid, _ = stack.build_joined_edge(tmp_path, EDGE)  # mosquitto, the default broker: its own bridge
    assert not any(name.startswith("bridge") for name in _names(unsaid))
    on_amqtt, _ = stack.build_joined_edge(tmp_path, EDGE, edge_broker="amqtt")  # no bridge of its own
    assert f"bridge-{NODE}" in _names(on_amqtt)


@pytest.mark.parametrize(("said", "edge_broker", "chosen"), [
    (None, "mosquitto", "native"), (None, "amqtt", "python"), ("python", "mosquitto", "python"),
    ("native", "mosquitto", "native"), ("python", "amqtt", "python")])
def test_an_unsaid_bridge_is_the_edge_brokers_default(said: str | None, edge_broker: str, chosen: str) -> None:
    assert stack.resolve_bridge(said, edge_broker) == chosen


def test_a_bridge_that_does_not_exist_is_refused_by_name() -> None:
    with pytest.raises(stack.StackError, match="--bridge mqtt-sn is not one of native, python"):
        stack.resolve_bridge("mqtt-sn", "mosquitto")
