"""Listen addresses given on the command line."""

import pytest

from broker.embedded import BrokerSettings, Listen, amqtt_config


@pytest.mark.parametrize(
    ("text", "host", "port"),
    [("127.0.0.1:1883", "127.0.0.1", 1883), ("0.0.0.0:8883", "0.0.0.0", 8883), ("[::1]:1884", "::1", 1884)],
)
def test_parse_accepts_host_and_port(text: str, host: str, port: int) -> None:
    assert Listen.parse(text) == Listen(host, port)


@pytest.mark.parametrize("text", ["1883", "localhost", ":1883", "host:0", "host:70000", "host:abc"])
def test_parse_names_the_bad_address(text: str) -> None:
    with pytest.raises(ValueError, match="is not HOST:PORT"):
        Listen.parse(text)


def test_amqtt_config_has_one_listener_per_address() -> None:
    config = amqtt_config(BrokerSettings(listen=(Listen("127.0.0.1", 1), Listen("127.0.0.1", 2))))
    assert [v["bind"] for v in config["listeners"].values()] == ["127.0.0.1:1", "127.0.0.1:2"]
