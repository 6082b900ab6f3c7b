"""bench twin's load generator: C clients (mosquitto_pub, mosquitto_sub) on our brokers, with credentials."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgehive.bench import cclients
from edgehive.bench.harness import BenchError
from runtime.url import BrokerUrl
from tests.fixtures.brokers import BrokerFactory

BROKERS = ["amqtt_broker", "mosquitto_broker"]
USERS = {"bench": "s3cret-pw"}


@pytest.mark.parametrize("factory_name", BROKERS)
def test_every_line_published_is_counted_by_the_subscriber(factory_name: str, request: pytest.FixtureRequest,
                                                          tmp_path: Path) -> None:
    broker = request.getfixturevalue(factory_name)(users=USERS)
    env = cclients.client_options(tmp_path, BrokerUrl.parse(broker.url("bench", USERS["bench"])))
    subscriber = cclients.Subscriber(env, tmp_path, "load/+/result", 300, "results")
    try:
        publishers = cclients.Publishers(env, tmp_path, [f"load/{k}/result" for k in range(3)], 1, "devices")
        try:
            publishers.publish([b"".join(b'{"n":%d}\n' % (k * 100 + i) for i in range(100)) for k in range(3)])
            assert subscriber.wait(30), f"{subscriber.received()} of 300 messages"
        finally:
            publishers.close()
        assert subscriber.received() == 300
        assert all(proc.returncode == 0 for proc in publishers.procs)
    finally:
        subscriber.close()


def test_a_refused_login_is_an_error_not_a_wait(mosquitto_broker: BrokerFactory, tmp_path: Path) -> None:
    broker = mosquitto_broker(users=USERS)
    env = cclients.client_options(tmp_path, BrokerUrl.parse(broker.url("bench", "wrong")))
    with pytest.raises(BenchError, match="before subscribing"):
        cclients.Subscriber(env, tmp_path, "load/#", 1, "results")
    with pytest.raises(BenchError, match="before connecting"):
        cclients.Publishers(env, tmp_path, ["load/x"], 1, "devices")
