"""A native (mosquitto) bridge's will ends a node's session at a real CloudHub, well before its keepalive timeout.

A lone CloudHub process on our shipped amqtt and on our shipped mosquitto (users and the link ACL on). First a
fake node, a plain client with the node's credentials, says EdgeHub's hello keepalive on its up topic and then
publishes, retained, the ``0`` a native bridge's will is. Then the real thing: an edge mosquitto whose
``connection`` section bridges the node's link to the cloud broker with ``notification_topic`` on the node's hello
(broker/nativebridge.py's settings, with the node's password rather than certificates); it is SIGKILLed, the cloud
broker fires its will, and CloudHub announces the node disconnected.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from schemas import topics
from schemas.envelope import Envelope, Group, Op, decode
from schemas.link import SessionNews
from tests.fixtures.brokers import MOSQUITTO, Broker, BrokerFactory
from tests.fixtures.mqtt import MqttError, TestClient
from tests.fixtures.processes import ManagedProcess, free_port, require_executable, wait_until

NODE = "edge-nb1"
NODE_PW = "node-pw"
CLOUD_PW = "cloud-pw"
KEEPALIVE_TIMEOUT_S = 120.0
WITHIN_S = 15.0
"""The deadline for the announcement after the will: far under CloudHub's keepalive timeout, so only the will can
meet it."""
WILL_LOGGED = f"node {NODE} disconnected: link lost (bridge's will)"
"""CloudHub's log line for a session ended by the will (cloud/cloudhub/routing.py ``link_lost``)."""


@pytest.fixture(params=["amqtt", "mosquitto"])
def cloud(edgehive_broker: BrokerFactory, request: pytest.FixtureRequest) -> Broker:
    return edgehive_broker(kind=request.param, users={"cloud": CLOUD_PW, NODE: NODE_PW})


@pytest.fixture
def cloudhub(cloud: Broker, tmp_path: Path) -> Iterator[ManagedProcess]:
    argv = [sys.executable, "-m", "cloud.cloudhub", "--broker", cloud.url("cloud", CLOUD_PW), "--log-level", "info",
            "--keepalive-timeout-s", str(KEEPALIVE_TIMEOUT_S)]
    process = ManagedProcess("cloudhub", argv, tmp_path / "cloudhub.log").start()
    yield process
    process.stop()


class SessionWatch:
    """The node's retained session announcements, as a controller reads them."""

    def __init__(self, cloud: Broker) -> None:
        self.client = TestClient(cloud.host, cloud.port, username="cloud", password=CLOUD_PW).connect()
        self.client.subscribe(topics.node_session(NODE))

    def wait(self, *, connected: bool, timeout: float, alive: ManagedProcess,
             nudge: Callable[[], None] = lambda: None) -> SessionNews:
        """The next announcement saying ``connected``; ``nudge`` runs every half second meanwhile (a node saying
        hello again until CloudHub, which may still be subscribing, hears it)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if alive.returncode() is not None:
                pytest.fail(f"{alive.name} exited:\n{alive.log_tail()}", pytrace=False)
            nudge()
            try:
                received = self.client.expect(timeout=0.5)
            except MqttError:
                continue
            if received.payload and (news := SessionNews.parse(decode(received.payload).body)).connected == connected:
                return news
        pytest.fail(f"no announcement of {NODE} {'connected' if connected else 'disconnected'} within {timeout} s:\n"
                    f"{alive.log_tail()}", pytrace=False)

    def close(self) -> None:
        self.client.close()


@pytest.fixture
def sessions(cloud: Broker) -> Iterator[SessionWatch]:
    watch = SessionWatch(cloud)
    yield watch
    watch.close()


def hello_keepalive() -> bytes:
    """What EdgeHub says up the link when the link comes up (edge/edgehub/routing.py ``keepalive``)."""
    return Envelope(node=NODE, src="edgehub", group=Group.HUB, op=Op.KEEPALIVE).encode()


def test_a_native_will_on_the_hello_topic_ends_the_session_well_before_the_keepalive_timeout(
        cloud: Broker, cloudhub: ManagedProcess, sessions: SessionWatch) -> None:
    with TestClient(cloud.host, cloud.port, username=NODE, password=NODE_PW) as node:
        node.publish(topics.link_hello(NODE), b"1", retain=True)  # a native bridge's connect: no session by itself
        first = sessions.wait(connected=True, timeout=30, alive=cloudhub,
                              nudge=lambda: node.publish(topics.link_up(NODE), hello_keepalive()))
        lost_at = time.monotonic()
        node.publish(topics.link_hello(NODE), b"0", retain=True)  # what the cloud broker publishes as the will
        gone = sessions.wait(connected=False, timeout=WITHIN_S, alive=cloudhub)
        assert gone.session == first.session
        assert time.monotonic() - lost_at < WITHIN_S < KEEPALIVE_TIMEOUT_S
        assert WILL_LOGGED in cloudhub.log_path.read_text()
        node.publish(topics.link_hello(NODE), b"1", retain=True)  # the bridge is back, and EdgeHub says hello
        again = sessions.wait(connected=True, timeout=30, alive=cloudhub,
                              nudge=lambda: node.publish(topics.link_up(NODE), hello_keepalive()))
        assert again.session != first.session, "a new session: the controllers resynchronise the node"


def bridge_conf(cloud: Broker, port: int, workdir: Path) -> Path:
    """An edge mosquitto on ``port`` bridging node NODE's link to ``cloud`` as the native bridge will."""
    lines = [
        "per_listener_settings false",
        f"listener {port} 127.0.0.1",
        "allow_anonymous true",
        "persistence false",
        "log_dest stdout",
        "log_type all",
        *(["user root"] if os.geteuid() == 0 else []),  # mosquitto drops to 'mosquitto', who cannot read tmp
        "",
        f"connection edgehive-{NODE}",
        f"address {cloud.host}:{cloud.port}",
        f"remote_clientid edgehive-bridge-{NODE}",
        f"local_clientid edgehive-bridge-{NODE}-local",
        f"remote_username {NODE}",
        f"remote_password {NODE_PW}",
        "bridge_protocol_version mqttv311",
        "try_private false",
        "bridge_attempt_unsubscribe false",
        "cleansession false",
        "keepalive_interval 10",
        "restart_timeout 1 5",
        "start_type automatic",
        "notifications true",
        f"notification_topic {topics.link_hello(NODE)}",
        f"topic {topics.link_down(NODE)} in 1",
        f"topic {topics.link_up(NODE)} out 1",
    ]
    path = workdir / "edge-mosquitto.conf"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_a_killed_edge_mosquittos_bridge_will_ends_the_session(
        cloud: Broker, cloudhub: ManagedProcess, sessions: SessionWatch, tmp_path: Path) -> None:
    binary = require_executable("mosquitto", MOSQUITTO)
    port = free_port()
    edge = ManagedProcess("edge-mosquitto", [binary, "-c", str(bridge_conf(cloud, port, tmp_path))],
                          tmp_path / "edge-mosquitto.log").start()
    with TestClient(cloud.host, cloud.port, username="cloud", password=CLOUD_PW) as watcher:
        watcher.subscribe(topics.link_hello(NODE))
        try:
            def hello(expected: bytes) -> bool:
                while True:
                    try:
                        received = watcher.expect(timeout=0.2)
                    except MqttError:
                        return False
                    if received.payload == expected:
                        return True

            wait_until(lambda: hello(b"1"), timeout=30, what="the bridge's hello 1 on the cloud broker", alive=edge)
            with TestClient("127.0.0.1", port) as local:  # EdgeHub's keepalive, carried up by the bridge
                first = sessions.wait(connected=True, timeout=30, alive=cloudhub,
                                      nudge=lambda: local.publish(topics.link_up(NODE), hello_keepalive()))
                killed_at = time.monotonic()
                edge.kill()
            gone = sessions.wait(connected=False, timeout=WITHIN_S, alive=cloudhub)
            assert gone.session == first.session
            assert time.monotonic() - killed_at < WITHIN_S < KEEPALIVE_TIMEOUT_S
            wait_until(lambda: hello(b"0"), timeout=5, what="the bridge's will 0 on the cloud broker")
            assert WILL_LOGGED in cloudhub.log_path.read_text(), "the will ended it, not the keepalive timeout"
        finally:
            edge.kill()
