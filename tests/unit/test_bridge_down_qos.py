"""The QoS of a bridge's down subscription (``down_qos``): 1 by default, 0 for NATS fleets, where each QoS 1
MQTT subscription is a replicated JetStream consumer per node; anything else refused by name, before anything
starts or is written."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from broker.bridge import Bridge, BridgeSettings
from broker.bridgecli import add_bridge_arguments, to_bridge
from broker.bridgesettings import BridgeProcessSettings
from cloud.joinserver.server import JoinServerSettings
from edgehive.bench.mqtt311 import subscribe_packet
from edgehive.bench.simulator import Simulator
from edgehive.join import JoinError, join
from runtime import settings
from runtime.url import BrokerUrl
from schemas import topics

CLOUD = BrokerUrl.parse("mqtt://n1:pw@127.0.0.1:1")
EDGE = BrokerUrl.parse("mqtt://127.0.0.1:2")


def test_the_default_is_qos_1_as_before() -> None:
    assert BridgeSettings(node="n1", cloud=CLOUD, edge=EDGE).down_qos == 1
    assert BridgeProcessSettings(node="n1", cloud="mqtt://h:1").down_qos == 1


def test_the_bridge_subscribes_to_its_down_topic_at_the_setting_and_to_stream_frames_at_1() -> None:
    bridge = Bridge(BridgeSettings(node="n1", cloud=CLOUD, edge=EDGE, down_qos=0))  # not started: no network
    assert bridge.cloud.subscriptions() == {topics.link_down("n1"): 0}
    # A lost stream frame is part of a log or an exec session gone: nothing resends it, so it stays at 1.
    assert bridge.cloud_stream.subscriptions() == {topics.stream("n1", topics.Direction.DOWN): 1}
    assert Bridge(BridgeSettings(node="n1", cloud=CLOUD, edge=EDGE)).cloud.subscriptions() == {
        topics.link_down("n1"): 1}


@pytest.mark.parametrize("bad", [2, -1, True, "0"])
def test_bad_values_are_refused_by_name(bad: object) -> None:
    with pytest.raises(ValueError, match=r"down_qos must be 0 or 1, not"):
        BridgeSettings(node="n1", cloud=CLOUD, edge=EDGE, down_qos=bad)  # type: ignore[arg-type]


def _load(tmp_path: Path, yaml: str, *argv: str) -> BridgeProcessSettings:
    config = tmp_path / "edge.yaml"
    config.write_text(yaml)
    parser = argparse.ArgumentParser()
    add_bridge_arguments(parser)
    return settings.load(BridgeProcessSettings, parser.parse_args(["--config", str(config), *argv]), environ={})


def test_edge_yaml_sets_it_and_the_flag_wins(tmp_path: Path) -> None:
    yaml = "node: n1\ncloud: mqtt://h:1\ndown_qos: 0\n"
    assert to_bridge(_load(tmp_path, yaml)).down_qos == 0
    assert to_bridge(_load(tmp_path, yaml, "--down-qos", "1")).down_qos == 1


def test_a_bad_value_in_edge_yaml_is_refused_naming_it(tmp_path: Path) -> None:
    with pytest.raises(settings.SettingsError, match="down_qos must be 0 or 1, not 2"):
        _load(tmp_path, "node: n1\ncloud: mqtt://h:1\ndown_qos: 2\n")


def test_the_join_endpoint_refuses_a_bad_value_and_says_nothing_by_default() -> None:
    assert JoinServerSettings(cloud_broker="mqtts://h:8883").down_qos is None
    assert JoinServerSettings(cloud_broker="mqtts://h:8883", down_qos=0).down_qos == 0
    with pytest.raises(ValueError, match="down_qos must be 0 or 1, not 3"):
        JoinServerSettings(cloud_broker="mqtts://h:8883", down_qos=3)


def test_join_refuses_a_bad_value_before_asking_anything_or_writing_anything(tmp_path: Path) -> None:
    state = tmp_path / "state"
    with pytest.raises(JoinError, match="--down-qos must be 0 or 1, not 2"):
        join("127.0.0.1:1", "token", "n1", state, timeout=1, down_qos=2)
    assert not state.exists()


def test_the_simulated_nodes_subscribe_as_their_bridges_would() -> None:
    assert subscribe_packet(1, "t", 0).endswith(b"\x00\x01t\x00")
    assert subscribe_packet(1, "t").endswith(b"\x00\x01t\x01")
    with pytest.raises(ValueError, match="down_qos must be 0 or 1, not 2"):
        Simulator("127.0.0.1", 1, ["sim-0000"], out=None, down_qos=2)  # type: ignore[arg-type]
