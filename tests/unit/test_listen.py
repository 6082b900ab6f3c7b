"""Listen addresses and the embedded broker's amqtt configuration."""

from pathlib import Path

import pytest

from broker.embedded import BrokerSettings, amqtt_config
from runtime.address import Address


@pytest.mark.parametrize(
    ("text", "host", "port"),
    [("127.0.0.1:1883", "127.0.0.1", 1883), ("0.0.0.0:8883", "0.0.0.0", 8883), ("[::1]:1884", "::1", 1884)],
)
def test_parse_accepts_host_and_port(text: str, host: str, port: int) -> None:
    assert Address.parse(text) == Address(host, port)
    assert Address.parse(str(Address(host, port))) == Address(host, port)


@pytest.mark.parametrize("text", ["1883", "localhost", ":1883", "host:0", "host:70000", "host:abc"])
def test_parse_names_the_bad_address(text: str) -> None:
    with pytest.raises(ValueError, match="is not HOST:PORT"):
        Address.parse(text)


def test_amqtt_config_has_one_listener_per_address() -> None:
    config = amqtt_config(BrokerSettings(listen=("127.0.0.1:1", "127.0.0.1:2")))
    assert [v["bind"] for v in config["listeners"].values()] == ["127.0.0.1:1", "127.0.0.1:2"]
    assert "broker.amqtt_plugins.OpenAuth" in config["plugins"]


def test_password_file_turns_on_auth_and_acl(tmp_path: Path) -> None:
    passwd = tmp_path / "passwd"
    passwd.write_text("")
    config = amqtt_config(BrokerSettings(password_file=str(passwd), tls_cert="c.pem", tls_key="k.pem"))
    assert set(config["plugins"]) == {"broker.amqtt_plugins.PasswordFileAuth", "broker.amqtt_plugins.LinkAclPlugin"}
    assert config["listeners"]["default"]["ssl"] is True


def test_settings_refuse_a_missing_password_file(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="does not exist"):
        BrokerSettings(password_file=str(tmp_path / "nope"))
