"""An MQTT 3.1.1 PUBACK completes its publish as paho's own decoding did, without its MQTT 5 objects per packet
(runtime/connection.py's _Client._handle_pubackcomp); what is not one (wrong size) is still refused by paho."""

from __future__ import annotations

from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt import _packet as paho_packets
from paho.mqtt.enums import MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.reasoncodes import ReasonCode

from runtime.connection import Connection, ConnectionSettings
from runtime.url import BrokerUrl


def _client() -> tuple[Any, list[tuple[int, Any]]]:
    conn = Connection(ConnectionSettings(url=BrokerUrl("127.0.0.1", 1), client_id="puback"), name="puback")
    client = conn._client
    heard: list[tuple[int, Any]] = []
    client.on_publish = lambda _c, _u, mid, reason, _props: heard.append((mid, reason))
    return client, heard


def _sent(client: Any, mid: int) -> mqtt.MQTTMessageInfo:
    message = mqtt.MQTTMessage(mid, b"a/b")
    message.qos = 1
    client._out_messages[mid] = message
    return message.info


def test_a_puback_completes_its_publish(monkeypatch: pytest.MonkeyPatch) -> None:
    def not_this_way(*_args: Any) -> None:
        raise AssertionError("paho's PUBACK decoding")

    monkeypatch.setattr(paho_packets, "decode_puback", not_this_way)
    client, heard = _client()
    info = _sent(client, 0x0102)
    client._in_packet["packet"] = b"\x01\x02"
    assert client._handle_pubackcomp("PUBACK") == MQTTErrorCode.MQTT_ERR_SUCCESS
    assert heard == [(0x0102, ReasonCode(PacketTypes.PUBACK))]
    assert info.is_published()
    assert 0x0102 not in client._out_messages


def test_a_puback_for_no_publish_changes_nothing() -> None:
    client, heard = _client()
    _sent(client, 5)
    client._in_packet["packet"] = b"\x00\x06"
    assert client._handle_pubackcomp("PUBACK") == MQTTErrorCode.MQTT_ERR_SUCCESS
    assert heard == []
    assert 5 in client._out_messages


def test_a_puback_of_the_wrong_size_is_refused_by_paho() -> None:
    client, heard = _client()
    _sent(client, 1)
    client._in_packet["packet"] = b"\x00\x01\x00"
    with pytest.raises(Exception, match="wrong size"):
        client._handle_pubackcomp("PUBACK")
    assert heard == []
