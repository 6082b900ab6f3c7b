"""Broker URL lists: one URL with a cluster's members in a row, the credentials said once."""

from __future__ import annotations

import pytest

from runtime.url import BrokerUrl, describe


def test_a_list_shares_scheme_and_credentials() -> None:
    urls = BrokerUrl.parse_list("mqtts://node-a:p%40ss@10.0.0.1:8883,10.0.0.2,nats-3.example:9883")
    assert [(u.host, u.port) for u in urls] == [("10.0.0.1", 8883), ("10.0.0.2", 8883), ("nats-3.example", 9883)]
    assert {(u.tls, u.username, u.password) for u in urls} == {(True, "node-a", "p@ss")}
    assert describe(urls) == "mqtts://node-a@10.0.0.1:8883,10.0.0.2:8883,nats-3.example:9883"


def test_one_address_is_a_list_of_one() -> None:
    assert BrokerUrl.parse_list("mqtt://127.0.0.1:1884") == (BrokerUrl("127.0.0.1", 1884),)


@pytest.mark.parametrize("bad", ["mqtt://h1:1883,,h3:1883", "mqtt://h1:1883,h2:x", "http://h1,h2"])
def test_a_bad_member_is_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="broker URL"):
        BrokerUrl.parse_list(bad)
