"""Node identities: join tokens, the join endpoint, client certificates on both brokers, revocation.

The cluster's CA and registry live in Secrets of the real API server; the join endpoint
is its own process; the brokers are ours, in client-certificate mode.
"""

from __future__ import annotations

import contextlib
import os
import ssl
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from cloud.clusterpki import ClusterPki, JoinRefused
from cloud.kube import Kube
from edgehive.join import JoinError, fetch_ca, join, renew, renew_if_due
from runtime.connection import Connection, ConnectionSettings, TlsSettings
from runtime.pki import CertificateAuthority, cert_info, new_key_and_csr
from runtime.url import BrokerUrl
from schemas import jointoken, topics
from schemas.jointoken import JoinToken
from schemas.kubeobj import EDGE_ROLE_LABEL
from tests.fixtures.apiserver import ApiServer
from tests.fixtures.brokers import Broker
from tests.fixtures.mqtt import MqttError, TestClient, TlsFiles
from tests.fixtures.processes import ManagedProcess, free_port, wait_until

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def pki(apiserver: ApiServer) -> ClusterPki:
    cluster = ClusterPki(Kube.connect(str(apiserver.kubeconfig)))
    cluster.init(["DNS:localhost", "IP:127.0.0.1"])
    assert cluster.init(["DNS:localhost", "IP:127.0.0.1"]) == []  # idempotent: nothing new the second time
    return cluster


@pytest.fixture(scope="module")
def join_endpoint(pki: ClusterPki, apiserver: ApiServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    work = tmp_path_factory.mktemp("joinserver")
    server = ManagedProcess("joinserver", [sys.executable, "-m", "cloud.joinserver", "--listen", f"127.0.0.1:{port}",
                                           "--kubeconfig", str(apiserver.kubeconfig),
                                           "--cloud-broker", "mqtts://127.0.0.1:8883"], work / "joinserver.log").start()
    address = f"127.0.0.1:{port}"
    token = pki.gettoken(60)
    wait_until(lambda: fetch_ca(address, token, timeout=2), timeout=30, what="the join endpoint", alive=server)
    yield address
    server.stop()


def test_join_gives_the_node_its_identity(pki: ClusterPki, join_endpoint: str, tmp_path: Path) -> None:
    identity = join(join_endpoint, str(pki.gettoken(600)), "edge-joined", tmp_path)
    assert identity.cert.exists()
    assert oct(identity.key.stat().st_mode & 0o777) == "0o600"
    assert "edge-joined" in pki.registry().nodes
    node = pki.kube.get_node("edge-joined")  # for CloudHub replicas to serve its first registration
    assert node is not None
    assert EDGE_ROLE_LABEL in node["metadata"]["labels"]
    config = identity.config.read_text()
    assert "node: edge-joined" in config
    assert "cloud: mqtts://127.0.0.1:8883" in config


def test_bad_tokens_are_refused(pki: ClusterPki, join_endpoint: str, tmp_path: Path) -> None:
    ca, key = pki.ca()
    expired = jointoken.issue(key, ca.hash, -5)
    with pytest.raises(JoinError, match="expired"):
        join(join_endpoint, str(expired), "edge-late", tmp_path)
    other_ca = CertificateAuthority.create()
    with pytest.raises(JoinError, match="not the one the token names"):
        join(join_endpoint, str(jointoken.issue(key, other_ca.hash, 600)), "edge-lost", tmp_path)
    good = pki.gettoken(600)
    stretched = JoinToken(good.ca_hash, good.token_id, good.expires + 86400, good.signature)
    with pytest.raises(JoinError, match="altered or forged"):
        join(join_endpoint, str(stretched), "edge-forger", tmp_path)
    forged = jointoken.issue(b"not the cluster's key" * 2, ca.hash, 600)
    with pytest.raises(JoinError, match="altered or forged"):
        join(join_endpoint, str(forged), "edge-forger", tmp_path)
    with pytest.raises(JoinError, match="malformed"):
        join(join_endpoint, "abc.def", "edge-forger", tmp_path)
    assert [pki.kube.get_node(n) for n in ("edge-late", "edge-lost", "edge-forger")] == [None] * 3  # no Node
    assert not {"edge-late", "edge-lost", "edge-forger"} & set(pki.registry().nodes)


def test_a_token_is_dead_after_its_node_is_revoked(pki: ClusterPki, join_endpoint: str, tmp_path: Path) -> None:
    token = str(pki.gettoken(600))
    join(join_endpoint, token, "edge-revoked", tmp_path / "first")
    pki.revoke("edge-revoked")
    with pytest.raises(JoinError, match="revoked"):
        join(join_endpoint, token, "edge-revoked", tmp_path / "again")


def test_a_csr_for_another_name_is_refused(pki: ClusterPki) -> None:
    _key, csr = new_key_and_csr("edge-b")
    with pytest.raises(JoinRefused, match="CN=edge-b"):
        pki.join(str(pki.gettoken(60)), "edge-a", csr)


# -- the brokers with client certificates --------------------------------------------------


def _identity(pki: ClusterPki, directory: Path, node: str) -> TlsFiles:
    ca, _ = pki.ca()
    key, csr = new_key_and_csr(node)
    cert = pki.join(str(pki.gettoken(60)), node, csr)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "ca.crt").write_bytes(ca.cert_pem)
    (directory / f"{node}.crt").write_bytes(cert)
    (directory / f"{node}.key").write_bytes(key)
    return TlsFiles(directory / "ca.crt", directory / f"{node}.crt", directory / f"{node}.key")


@pytest.fixture
def cert_broker(pki: ClusterPki, edgehive_broker: Callable[..., Broker],
                tmp_path: Path) -> Callable[[str], tuple[Broker, Path]]:
    def start(kind: str) -> tuple[Broker, Path]:
        ca, _ = pki.ca()
        server = pki.broker_identity()
        for name, data in (("ca.crt", ca.cert_pem), ("server.crt", server.cert_pem), ("server.key", server.key_pem),
                           ("crl.pem", pki.crl())):
            (tmp_path / name).write_bytes(data)
        broker = edgehive_broker(kind, tls=(tmp_path / "server.crt", tmp_path / "server.key"),
                                 client_ca=tmp_path / "ca.crt", crl=tmp_path / "crl.pem")
        return broker, tmp_path / "crl.pem"
    return start


def _nothing_of_b(client: TestClient, b_topic_prefix: str) -> None:
    try:
        while True:
            message = client.expect(timeout=1.0)
            assert not message.topic.startswith(b_topic_prefix), f"node A received {message.topic}"
    except (AssertionError, MqttError) as exc:
        if "node A received" in str(exc):
            raise


@pytest.mark.parametrize("kind", ["amqtt", "mosquitto"])
def test_a_node_sees_only_its_own_link(pki: ClusterPki, cert_broker: Callable[[str], tuple[Broker, Path]],
                                       tmp_path: Path, kind: str) -> None:
    broker, _crl = cert_broker(kind)
    a = _identity(pki, tmp_path / "ids", f"edge-a-{kind[:4]}")
    b = _identity(pki, tmp_path / "ids", f"edge-b-{kind[:4]}")
    cloud = pki.cloud_identity()
    (tmp_path / "ids" / "cloud.crt").write_bytes(cloud.cert_pem)
    (tmp_path / "ids" / "cloud.key").write_bytes(cloud.key_pem)
    cloud_tls = TlsFiles(a.ca, tmp_path / "ids" / "cloud.crt", tmp_path / "ids" / "cloud.key")
    node_a, node_b = f"edge-a-{kind[:4]}", f"edge-b-{kind[:4]}"
    with (TestClient("127.0.0.1", broker.port, tls=a) as spy, TestClient("127.0.0.1", broker.port, tls=b) as peer,
          TestClient("127.0.0.1", broker.port, tls=cloud_tls) as hub):
        for topic_filter in (topics.link_down(node_b), f"{topics.LINK}/+/down", "#"):
            with contextlib.suppress(MqttError):  # refused outright (amqtt); mosquitto grants, filters on delivery
                spy.subscribe(topic_filter)
        peer.subscribe(topics.link_down(node_b))
        hub.subscribe(topics.link_up(node_b))
        hub.publish(topics.link_down(node_b), b"for b only")
        assert peer.expect().payload == b"for b only"
        spy.publish(topics.link_up(node_b), b"a pretending to be b")
        peer.publish(topics.link_up(node_b), b"really b")
        assert hub.expect().payload == b"really b"  # the forged one did not arrive first (or at all)
        _nothing_of_b(spy, f"{topics.LINK}/{node_b}")
        _nothing_of_b(hub, "never")  # and nothing more reached the cloud
        spy.publish(topics.link_up(node_a), b"a's own")  # what a may do still works


@pytest.mark.parametrize("kind", ["amqtt", "mosquitto"])
def test_no_certificate_or_a_foreign_one_is_refused(pki: ClusterPki, cert_broker: Callable[[str], tuple[Broker, Path]],
                                                    tmp_path: Path, kind: str) -> None:
    broker, _crl = cert_broker(kind)
    mine = _identity(pki, tmp_path / "ids", "edge-c")
    with pytest.raises((MqttError, ssl.SSLError, OSError)):
        TestClient("127.0.0.1", broker.port, timeout=3).connect().close()  # no TLS at all
    with pytest.raises((MqttError, ssl.SSLError, OSError)):
        TestClient("127.0.0.1", broker.port, timeout=3, tls=TlsFiles(mine.ca)).connect().close()  # TLS, no cert
    other = CertificateAuthority.create()
    key, csr = new_key_and_csr("edge-c")
    (tmp_path / "other.crt").write_bytes(other.sign_identity(csr, "edge-c"))
    (tmp_path / "other.key").write_bytes(key)
    with pytest.raises((MqttError, ssl.SSLError, OSError)):
        TestClient("127.0.0.1", broker.port, timeout=3,
                   tls=TlsFiles(mine.ca, tmp_path / "other.crt", tmp_path / "other.key")).connect().close()
    TestClient("127.0.0.1", broker.port, tls=mine).connect().close()  # while the cluster's own works


def test_revoked_node_is_cut_off_amqtt(pki: ClusterPki, cert_broker: Callable[[str], tuple[Broker, Path]],
                                       tmp_path: Path) -> None:
    broker, crl = cert_broker("amqtt")
    node = "edge-cut"
    ids = _identity(pki, tmp_path / "ids", node)
    client = TestClient("127.0.0.1", broker.port, tls=ids).connect()
    try:
        crl.write_bytes(pki.revoke(node))
        wait_until(client.disconnected.is_set, timeout=10, what="the revoked node disconnected")
    finally:
        client.close()
    with pytest.raises((MqttError, ssl.SSLError, OSError)):
        TestClient("127.0.0.1", broker.port, timeout=3, tls=ids).connect().close()


def test_revoked_node_is_cut_off_mosquitto(pki: ClusterPki, tmp_path: Path) -> None:
    """mosquitto keeps a revoked client that is connected; ``edgehive run broker`` restarts it on a new CRL."""
    ca, _ = pki.ca()
    server = pki.broker_identity()
    for name, data in (("ca.crt", ca.cert_pem), ("server.crt", server.cert_pem), ("server.key", server.key_pem),
                       ("crl.pem", pki.crl())):
        (tmp_path / name).write_bytes(data)
    port = free_port()
    broker = ManagedProcess("mosquitto-wrapper", [
        sys.executable, "-m", "edgehive", "run", "broker", "--kind", "mosquitto", "--listen", f"127.0.0.1:{port}",
        "--tls-cert", str(tmp_path / "server.crt"), "--tls-key", str(tmp_path / "server.key"),
        "--tls-ca", str(tmp_path / "ca.crt"), "--client-certs", "--crl-file", str(tmp_path / "crl.pem")],
        tmp_path / "broker.log", env={**os.environ, "EDGEHIVE_STATE_DIR": str(tmp_path / "state")}).start()
    try:
        node, other = "edge-cut-m", "edge-kept-m"
        ids, kept = _identity(pki, tmp_path / "ids", node), _identity(pki, tmp_path / "ids", other)
        client = wait_until(lambda: TestClient("127.0.0.1", port, tls=ids).connect(), timeout=20,
                            what="mosquitto with client certificates", alive=broker)
        try:
            (tmp_path / "crl.pem").write_bytes(pki.revoke(node))
            wait_until(client.disconnected.is_set, timeout=15, what="the revoked node disconnected", alive=broker)
        finally:
            client.close()
        with pytest.raises((MqttError, ssl.SSLError, OSError)):
            TestClient("127.0.0.1", port, timeout=3, tls=ids).connect().close()
        wait_until(lambda: _connects(port, kept), timeout=20, what="another node connecting again", alive=broker)
    finally:
        broker.stop()


def _connects(port: int, tls: TlsFiles) -> bool:
    TestClient("127.0.0.1", port, tls=tls).connect().close()
    return True


def test_rotation_keeps_the_link_and_the_next_connect_uses_the_new_certificate(
        pki: ClusterPki, join_endpoint: str, cert_broker: Callable[[str], tuple[Broker, Path]],
        tmp_path: Path) -> None:
    broker, crl = cert_broker("amqtt")
    node = "edge-rotating"
    identity = join(join_endpoint, str(pki.gettoken(60)), node, tmp_path / "edge")
    old = cert_info(identity.cert.read_bytes())
    url = BrokerUrl("127.0.0.1", broker.port, tls=True)
    connection = Connection(ConnectionSettings(
        url=url, client_id=f"bridge-{node}",
        tls=TlsSettings(str(identity.ca), str(identity.cert), str(identity.key))), name="rotating")
    drops: list[bool] = []
    connection.on_connection_change(lambda up: drops.append(up) if not up else None)
    connection.start()
    try:
        wait_until(lambda: connection.connected, timeout=20, what="the node connected with its first certificate")
        renew(join_endpoint, identity, node)
        new = cert_info(identity.cert.read_bytes())
        assert new.serial != old.serial
        assert new.subject_cn == node
        assert connection.connected
        assert drops == []  # renewing did not take the link down
        assert pki.registry().nodes[node]["serial"] == new.serial
        # Retire the old certificate alone: the broker drops the session made with it, and the
        # reconnect presents the new one.
        ca, _ = pki.ca()
        crl.write_bytes(ca.crl([(old.serial, node)]))
        wait_until(lambda: drops, timeout=15, what="the session on the old certificate dropped")
        wait_until(lambda: connection.connected, timeout=20, what="the reconnect with the renewed certificate")
    finally:
        connection.close(drain_timeout=0)
    assert not renew_if_due(identity)  # a fresh certificate is not due
