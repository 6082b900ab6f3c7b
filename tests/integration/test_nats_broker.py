"""Our link on a 3-member NATS cluster run from ``edgehive broker --nats-config``: any member serves any node.

MQTT behaviour of NATS (2.9 when first written, 2.15 now) that differs from mosquitto 2.0, seen here, and what
we do about it:

- A subscription outside a user's permissions is refused in the SUBACK (0x80); a denied publish is
  acknowledged and dropped, as mosquitto does (MQTT 3.1.1 has no refusal for PUBLISH). The ACL tests
  accept either way of refusing.
- Topics are NATS subjects: ``/`` becomes ``.``, so a topic level holding ``.``, ``*`` or ``>`` changes
  meaning, and ``$MQTT/...`` topics are NATS's own (refused). Our link topics contain none of them; the
  writer refuses node names with ``.`` (Kubernetes allows them, NATS cannot fence them).
- Passwords are checked as bcrypt only (``edgehive passwd --bcrypt``); NATS reads no CRL (a node is
  revoked by dropping its user and reloading).
- QoS 1 goes through JetStream: about 1,000 msg/s against mosquitto's 7-8k (ENVIRONMENT.md); QoS 2 is
  served since 2.10 (we use QoS 0 and 1 only). In-flight QoS 1 per *session* is capped by ``max_ack_pending``, and a
  delivery past the cap is skipped until JetStream redelivers it, ``ack_wait`` later (broker/nats.py).
- Sessions, retained messages and queued QoS 1 messages live in replicated streams, so a persistent
  session survives the loss of the member it was on, which no single mosquitto can offer.
- For some seconds after a member dies (over 10 s seen here under load), the survivors hold new CONNECTs
  and QoS 1 PUBACKs until JetStream has elected new leaders for what it led: a client must wait longer
  for its CONNACK than from mosquitto (our Connection waits; its keepalive bounds the wait).
- And when a member dies, the QoS 1 messages it had in flight to a session are delivered again after
  newer ones (tests/integration/test_nats_failover.py, one run in three: 4 messages first seen out of
  order); mosquitto keeps a session's order. The delivery protocol resends and applies idempotently, so
  nothing is lost or applied twice, at the cost of resends.
- NATS 2.9 has no MQTT shared subscriptions (MQTT 5 only) and no MQTT 5 at all.
"""

from __future__ import annotations

import json
import os
import signal
import socket
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

from broker import nats
from cloud.edgecontroller.controller import SECONDARY as EDGECONTROLLER_SECONDARY
from cloud.nodesync import RESYNC_WORKERS
from edgehive.bench.harness import BenchError
from edgehive.bench.natsapi import move_stream_leader, stream_leader
from runtime.pki import CertificateAuthority
from runtime.url import BrokerUrl
from schemas import topics
from schemas.envelope import DEFAULT_MAX_SIZE, Envelope, Group, Op, decode
from schemas.resource import ResourceKey
from tests.fixtures.mqtt import MqttError, TestClient, TlsFiles
from tests.fixtures.nats import ClientCerts, NatsCluster, NatsClusterFactory, require_nats
from tests.fixtures.processes import ManagedProcess, free_port, wait_until
from tests.integration.test_link_acl import USERS, _subscribe_refused_or_filtered, check_link_fence


def _client(cluster: NatsCluster, member: int, user: str, **kwargs: object) -> TestClient:
    broker = cluster.members[member]
    return TestClient(broker.host, broker.port, username=user, password=USERS[user], **kwargs)  # type: ignore[arg-type]


def test_link_envelopes_cross_members_both_ways(nats_cluster: NatsClusterFactory) -> None:
    cluster = nats_cluster(users=USERS)
    with _client(cluster, 0, "cloud") as cloud, _client(cluster, 2, "node-a") as node_a:
        cloud.subscribe(topics.all_links(topics.Direction.UP))
        node_a.subscribe(topics.link_down("node-a"))
        # The largest envelope our codec lets through crosses too (NATS's default max_payload is 1 MB).
        big = Envelope(node="node-a", src="edgecontroller", group=Group.RESOURCE, op=Op.UPDATE,
                       res=ResourceKey.parse("default/pod/big"), body={"blob": b"x" * (DEFAULT_MAX_SIZE - 1024)})
        small = Envelope(node="node-a", src="edgecontroller", group=Group.RESOURCE, op=Op.INSERT,
                         res=ResourceKey.parse("default/pod/web"), rv="7", body={"metadata": {"name": "web"}})
        for envelope in (small, big):
            cloud.publish(topics.link_down("node-a"), envelope.encode())
        got = [node_a.expect(), node_a.expect()]
        assert [decode(m.payload).id for m in got] == [small.id, big.id]
        assert decode(got[1].payload).body == big.body

        reply = small.reply("metamanager")
        node_a.publish(topics.link_up("node-a"), reply.encode())
        up = cloud.expect()
        assert up.topic == topics.link_up("node-a")
        assert decode(up.payload).parent == small.id


def test_retained_state_envelopes_reach_late_subscribers_on_other_members(
        nats_cluster: NatsClusterFactory) -> None:
    cluster = nats_cluster(users=USERS)

    def session(node: str, op: Op) -> Envelope:
        return Envelope(node=node, src="cloudhub", group=Group.HUB, op=op, body={"session": f"{node}-{op}"})

    with _client(cluster, 0, "cloud") as cloudhub:
        cloudhub.publish(topics.node_session("node-a"), session("node-a", Op.CONNECTED).encode(), retain=True)
        cloudhub.publish(topics.node_session("node-b"), session("node-b", Op.CONNECTED).encode(), retain=True)
        last = session("node-a", Op.DISCONNECTED)
        cloudhub.publish(topics.node_session("node-a"), last.encode(), retain=True)  # replaces the first
    with _client(cluster, 2, "cloud") as late:
        late.subscribe(topics.all_node_sessions())
        seen = {decode(m.payload).node: decode(m.payload) for m in (late.expect(), late.expect())}
        assert seen["node-a"].id == last.id
        assert seen["node-b"].op == Op.CONNECTED
        with pytest.raises(MqttError, match="no message arrived"):
            late.expect(timeout=1.0)
    # A node may not read the cloud's state: its retained messages stay with cloud users.
    with _client(cluster, 1, "node-a") as node_a:
        _subscribe_refused_or_filtered(node_a, topics.all_node_sessions())
        node_a.subscribe(topics.link_down("node-a"))
        with _client(cluster, 1, "cloud") as cloud:
            cloud.publish(topics.link_down("node-a"), b"fence")
        fence = node_a.expect()
        assert (fence.topic, fence.payload) == (topics.link_down("node-a"), b"fence")


def test_qos1_queued_for_a_persistent_session_survive_its_member(nats_cluster: NatsClusterFactory) -> None:
    """The bridge's session: subscribed on member 2, away while member 2 dies, back on member 3."""
    cluster = nats_cluster(users=USERS)
    bridge_id = "edgehive-bridge-node-a"
    with _client(cluster, 1, "node-a", client_id=bridge_id, clean_session=False) as bridge:
        bridge.subscribe(topics.link_down("node-a"))
    cluster.members[1].kill()
    # Until JetStream has new leaders for what member 2 led, the others hold CONNECTs and QoS 1 PUBACKs
    # (seen: over 10 s on this loaded machine), hence the longer deadlines.
    with _client(cluster, 0, "cloud", timeout=30) as cloud:
        for i in range(50):
            cloud.publish(topics.link_down("node-a"), f"m{i}".encode())
    with _client(cluster, 2, "node-a", client_id=bridge_id, clean_session=False, timeout=30) as bridge:
        got = [bridge.expect(timeout=15).payload for _ in range(50)]  # no SUBSCRIBE: the session has it
    assert got == [f"m{i}".encode() for i in range(50)]


def test_a_burst_left_unacknowledged_holds_back_nothing_else_for_the_session(
        nats_cluster: NatsClusterFactory) -> None:
    """A CloudHub replica that takes over a dead one's nodes gets, within half a second, every EdgeController
    replica's first store listings for them on its own inbox (each replica lists up to RESYNC_WORKERS nodes at
    once, every kind asked together), acknowledged only as its handler takes them. NATS caps a session's
    unacknowledged QoS 1 deliveries at ``max_ack_pending`` and skips what comes past the cap until ``ack_wait``
    (30 s) later: at 100, a fifth of those queries came 30 s late (broker/nats.py). With our configuration, a burst
    of that size left unacknowledged still lets the next message, on another subscription of the same session,
    through at once."""
    cluster = nats_cluster(users=USERS, size=1)
    burst = 3 * RESYNC_WORKERS * (1 + len(EDGECONTROLLER_SECONDARY))  # three EdgeController replicas' listings
    own_inbox = topics.inbox(topics.Side.CLOUD, "cloudhub-hub-2")
    shared_inbox = topics.inbox(topics.Side.CLOUD, "cloudhub")
    with _client(cluster, 0, "cloud", manual_ack=True) as hub, _client(cluster, 0, "cloud") as controllers:
        hub.subscribe(own_inbox)
        hub.subscribe(shared_inbox)
        for i in range(burst):
            controllers.publish(own_inbox, f"q{i}".encode())
        listed = [hub.expect(timeout=10).payload for _ in range(burst)]  # none acknowledged
        assert listed == [f"q{i}".encode() for i in range(burst)]
        controllers.publish(shared_inbox, b"after")
        assert hub.expect(timeout=5).payload == b"after"


def test_a_node_cannot_use_another_nodes_link_across_members(nats_cluster: NatsClusterFactory) -> None:
    cluster = nats_cluster(users=USERS)
    for user, password in (("node-a", "wrong"), ("stranger", "x")):
        with pytest.raises(MqttError, match="refused the connection"):
            TestClient(cluster.members[0].host, cluster.members[0].port, username=user, password=password).connect()
    with _client(cluster, 0, "cloud") as cloud, _client(cluster, 1, "node-a") as node_a, \
            _client(cluster, 2, "node-b") as node_b:
        # NATS's own delivery subjects are not a way round the ACL either.
        check_link_fence(cloud, node_a, node_b, more_stolen=("$MQTT/sub/#", "$MQTT/#"))


def test_a_node_cannot_speak_the_nats_protocol(nats_cluster: NatsClusterFactory) -> None:
    """Over NATS's own protocol a node could subscribe to $MQTT.sub.> and read every session's deliveries."""
    cluster = nats_cluster(users=USERS)
    assert _nats_connect(cluster.client_ports[0], "cloud", USERS["cloud"]).startswith("PONG")
    assert "Authorization Violation" in _nats_connect(cluster.client_ports[0], "node-a", USERS["node-a"])


def test_client_certificates_name_the_node_and_a_reload_revokes_one(nats_cluster: NatsClusterFactory,
                                                                   tmp_path: Path) -> None:
    ca = CertificateAuthority.create("nats-test-ca")
    (tmp_path / "ca.crt").write_bytes(ca.cert_pem)
    for name, (key, cert) in {"server": ca.issue("nats", server_names=["IP:127.0.0.1"]),
                              **{n: ca.issue(n, client=True) for n in ("cloud", "node-a", "node-b", "node-c")}}.items():
        (tmp_path / f"{name}.key").write_bytes(key)
        (tmp_path / f"{name}.crt").write_bytes(cert)
    cluster = nats_cluster(certs=ClientCerts(tmp_path / "server.crt", tmp_path / "server.key", tmp_path / "ca.crt",
                                             nodes=("node-a", "node-b")))

    def client(member: int, name: str) -> Callable[[], TestClient]:
        broker = cluster.members[member]
        files = TlsFiles(tmp_path / "ca.crt", tmp_path / f"{name}.crt", tmp_path / f"{name}.key")
        return lambda: TestClient(broker.host, broker.port, tls=files, timeout=5)

    cloud = _connect_when_ready(client(0, "cloud"))
    node_a = _connect_when_ready(client(2, "node-a"))
    try:
        with pytest.raises(MqttError, match="refused the connection"):  # signed by our CA, but not a listed node
            _closing(client(1, "node-c"))
        _subscribe_refused_or_filtered(node_a, topics.link_down("node-b"))
        node_a.subscribe(topics.link_down("node-a"))
        cloud.subscribe(topics.all_links(topics.Direction.UP))
        cloud.publish(topics.link_down("node-a"), b"for a")
        assert node_a.expect().payload == b"for a"
        node_a.publish(topics.link_up("node-a"), b"from a")
        assert cloud.expect().payload == b"from a"

        # Revocation: node-a leaves --nats-nodes on every member, which reload their configuration.
        for i, member in enumerate(cluster.members):
            nats.write_config(replace(cluster.settings[i], nats_nodes=("node-b",)), cluster.config_dir(i))
            os.kill(member.pid, signal.SIGHUP)
        wait_until(node_a.disconnected.is_set, timeout=15, what="node-a's open connection to be cut")
        with pytest.raises(MqttError, match="refused the connection"):
            _closing(client(0, "node-a"))
    finally:
        cloud.close()
        node_a.close()


def _closing(make: Callable[[], TestClient]) -> None:
    """Connect and close again: raises what ``connect`` raises."""
    attempt = make()
    try:
        attempt.connect()
    finally:
        attempt.close()


def _connect_when_ready(make: Callable[[], TestClient]) -> TestClient:
    """A TLS member accepts connections before JetStream, and so MQTT, has its quorum: try until it answers."""
    def attempt() -> TestClient:
        client = make()
        try:
            return client.connect()
        except MqttError:
            client.close()
            raise
    return wait_until(attempt, timeout=30, what="an MQTT session over TLS")


def _nats_connect(port: int, user: str, password: str) -> str:
    """NATS's handshake by hand (INFO, CONNECT, PING): the server's answer line."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        stream = sock.makefile("rwb")
        assert stream.readline().startswith(b"INFO ")
        stream.write(f'CONNECT {{"user":"{user}","pass":"{password}","verbose":false}}\r\nPING\r\n'.encode())
        stream.flush()
        return stream.readline().decode()


def test_a_server_without_the_route_secret_cannot_join(nats_cluster: NatsClusterFactory, tmp_path: Path) -> None:
    """A joined intruder would receive every node's traffic; the members refuse its route."""
    cluster = nats_cluster(users=USERS)
    member = cluster.members[0]
    route = cluster.settings[0].nats_cluster
    conf = tmp_path / "intruder.conf"
    conf.write_text(json.dumps({
        "server_name": "intruder", "listen": f"127.0.0.1:{free_port()}",
        "cluster": {"name": nats.CLUSTER_NAME, "listen": f"127.0.0.1:{free_port()}",
                    "routes": [f"nats-route://{nats.ROUTE_USER}:{'x' * 64}@{route}"]}}))
    intruder = ManagedProcess("intruder", [require_nats(), "-c", str(conf)], tmp_path / "intruder.log").start()
    try:
        refused = f'authentication error - User "{nats.ROUTE_USER}"'
        wait_until(lambda: refused in (member.workdir / "broker-1.log").read_text(), timeout=15,
                   what="member 1 to refuse the intruder's route")
    finally:
        intruder.stop()
    with _client(cluster, 0, "cloud") as cloud, _client(cluster, 2, "cloud", client_id="cloud-2") as other:
        other.subscribe("edgehive/status/+")
        cloud.publish("edgehive/status/cloudhub", b"still one cluster")
        assert other.expect().payload == b"still one cluster"


def test_the_benchmark_moves_the_sessions_streams_leadership(nats_cluster: NatsClusterFactory) -> None:
    """``bench scale --broker nats`` kills the member that leads the MQTT sessions stream (the worst case for the
    links' failover): its JetStream requests (edgehive.bench.natsapi) read and move that leadership."""
    cluster = nats_cluster()  # anonymous, as the benchmark's members are
    member = BrokerUrl("127.0.0.1", cluster.client_ports[0])
    leader = wait_until(lambda: stream_leader(member, "$MQTT_sess"), timeout=15, what="a leader of $MQTT_sess")
    target = next(name for name in ("nats-1", "nats-2", "nats-3") if name != leader)
    move_stream_leader(member, "$MQTT_sess", to=target)
    wait_until(lambda: stream_leader(member, "$MQTT_sess") == target, timeout=15, what=f"{target} to lead")
    with pytest.raises(BenchError, match="could not move"):
        move_stream_leader(member, "$MQTT_sess", to="nats-9")
