"""Brokers with TLS listeners, as edgehive configures them, and clients that check the certificate."""

from __future__ import annotations

from pathlib import Path

import pytest

from runtime.connection import Connection, ConnectionSettings, Incoming, TlsSettings
from runtime.url import BrokerUrl
from tests.fixtures.brokers import BrokerFactory
from tests.fixtures.pki import make_certificates
from tests.fixtures.processes import wait_until


@pytest.mark.parametrize("kind", ["amqtt", "mosquitto"])
def test_tls_listener_carries_traffic_and_refuses_a_wrong_ca(kind: str, edgehive_broker: BrokerFactory,
                                                             tmp_path: Path) -> None:
    make_certificates(tmp_path / "pki")
    make_certificates(tmp_path / "other")
    pki = tmp_path / "pki"
    broker = edgehive_broker(kind, users={"cloud": "pw"}, tls=(pki / "server.crt", pki / "server.key"))
    url = BrokerUrl.parse(broker.url("cloud", "pw"))
    assert url.tls

    got: list[bytes] = []

    def collect(message: Incoming) -> None:
        got.append(message.payload)
        message.ack()

    good = Connection(ConnectionSettings(url, client_id="tls-good", tls=TlsSettings(str(tmp_path / "pki/ca.crt"))),
                      name="tls-good")
    good.subscribe("t/tls")
    good.on_message(collect)
    bad = Connection(ConnectionSettings(url, client_id="tls-bad", tls=TlsSettings(str(tmp_path / "other/ca.crt"))),
                     name="tls-bad")
    good.start()
    bad.start()
    try:
        assert good.wait_connected(15)
        good.publish("t/tls", b"secret", timeout=10)
        wait_until(lambda: got == [b"secret"], timeout=10, what="the message over TLS")
        wait_until(lambda: bad.counters.get("connect_failures") >= 1, timeout=15,
                   what="the client with the wrong CA to fail")
        assert not bad.connected
    finally:
        good.close(drain_timeout=1)
        bad.close(drain_timeout=0)
