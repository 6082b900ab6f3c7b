"""The NATS writer: topic filters to subjects, each node's user fenced to its own link, refusals that say why."""

from __future__ import annotations

from pathlib import Path

import pytest

from broker import bcrypt
from broker.embedded import BrokerSettings
from broker.nats import JS_API_TIMEOUT, MAX_ACK_PENDING, NatsConfigError, mqtt_subject, nats_conf
from broker.passwords import set_password, verify_password
from cloud.edgecontroller.controller import SECONDARY as EDGECONTROLLER_SECONDARY
from cloud.nodesync import RESYNC_WORKERS


def test_topic_filters_become_subjects() -> None:
    assert mqtt_subject("edgehive/link/node-a/up") == "edgehive.link.node-a.up"
    assert mqtt_subject("edgehive/link/+/up") == "edgehive.link.*.up"
    assert mqtt_subject("edgehive/link/#") == "edgehive.link.>"
    for bad in ("edgehive//up", "a.b/c", "a/*", "a/>"):
        with pytest.raises(NatsConfigError):
            mqtt_subject(bad)


def test_bcrypt_hashes_check_in_our_password_files_too(tmp_path: Path) -> None:
    stored = bcrypt.hash_password("s3cret")
    assert bcrypt.is_bcrypt(stored)
    assert verify_password("s3cret", stored)
    assert not verify_password("other", stored)


def _password_settings(tmp_path: Path, **extra: object) -> BrokerSettings:
    passwd = tmp_path / "passwd"
    for user in ("cloud", "node-a"):
        set_password(passwd, user, "pw", use_bcrypt=True)
    fields: dict[str, object] = {"listen": ("127.0.0.1:1883",), "password_file": str(passwd), **extra}
    return BrokerSettings(**fields)  # type: ignore[arg-type]


def test_each_node_user_holds_only_its_own_link(tmp_path: Path) -> None:
    secret = "s" * 40
    (tmp_path / "route-secret").write_text(secret + "\n")
    conf = nats_conf(_password_settings(tmp_path, nats_cluster="127.0.0.1:6222",
                                        nats_routes=("127.0.0.1:6223", "127.0.0.1:6224"),
                                        nats_route_secret_file=str(tmp_path / "route-secret")), tmp_path)
    users = {u["user"]: u for u in conf["authorization"]["users"]}
    assert set(users) == {"cloud", "node-a"}
    node = users["node-a"]
    assert node["permissions"]["publish"]["allow"] == ["edgehive.link.node-a.up", "edgehive.link.node-a.stream.up",
                                                       "edgehive.link.node-a.hello"]
    assert node["permissions"]["subscribe"]["allow"] == [
        "edgehive.link.node-a.down", "edgehive.link.node-a.stream.down", "$MQTT.sub.>"]
    assert node["allowed_connection_types"] == ["MQTT"]
    assert users["cloud"]["permissions"]["publish"]["allow"] == [">"]
    assert conf["cluster"]["authorization"] == {"user": "edgehive-route", "password": secret}
    assert conf["cluster"]["routes"] == [f"nats-route://edgehive-route:{secret}@127.0.0.1:6223",
                                         f"nats-route://edgehive-route:{secret}@127.0.0.1:6224"]
    assert conf["mqtt"]["stream_replicas"] == 3
    assert conf["mqtt"]["ack_wait"] == "30s"  # explicit: it decides when NATS redelivers, out of order
    assert conf["mqtt"]["max_ack_pending"] == MAX_ACK_PENDING == 1024
    # below NATS's 5 s: a link whose member died is back at the first CONNECT after the sessions stream's election
    assert conf["mqtt"]["js_api_timeout"] == JS_API_TIMEOUT == "2s"


def test_max_ack_pending_holds_a_takeovers_listings_and_a_sessions_subscriptions() -> None:
    """Per MQTT session, NATS skips a QoS 1 delivery past max_ack_pending until ack_wait (30 s) later (broker/nats.py):
    a CloudHub replica taking over nodes has the first store listings of three EdgeController replicas (each up to
    RESYNC_WORKERS nodes, every kind asked at once) in flight on its own inbox, with its own session announcements
    coming back, and needs room for twice the listings. And NATS refuses a subscription once a session's consumers
    hold 65,535 in all: a component's dozen or so QoS 1 subscriptions must still fit."""
    listings = 3 * RESYNC_WORKERS * (1 + len(EDGECONTROLLER_SECONDARY))
    assert 2 * listings <= MAX_ACK_PENDING
    assert MAX_ACK_PENDING * 16 <= 65_535


def test_client_certificates_map_to_listed_nodes(tmp_path: Path) -> None:
    for name in ("ca.crt", "server.crt", "server.key"):
        (tmp_path / name).write_text("")
    settings = BrokerSettings(listen=("127.0.0.1:8883",), tls_cert=str(tmp_path / "server.crt"),
                              tls_key=str(tmp_path / "server.key"), tls_ca=str(tmp_path / "ca.crt"),
                              client_certs=True, nats_nodes=("node-b", "node-a"))
    conf = nats_conf(settings, tmp_path)
    assert conf["mqtt"]["tls"]["verify_and_map"] is True
    assert [u["user"] for u in conf["authorization"]["users"]] == ["CN=cloud", "CN=node-a", "CN=node-b"]
    assert all("password" not in u for u in conf["authorization"]["users"])


@pytest.mark.parametrize(("extra", "reason"), [
    ({"crl_file": "/tmp/crl.pem"}, "reads no CRL"),
    ({"listen": ("127.0.0.1:1883", "127.0.0.1:1884")}, "one MQTT listener"),
    ({"nats_routes": ("127.0.0.1:6223",)}, "needs --nats-cluster"),
    ({"nats_cluster": "127.0.0.1:6222"}, "needs --nats-route-secret-file"),
    ({"nats_cluster": "127.0.0.1:6222", "nats_route_secret_file": "/dev/null"}, "at least 32 characters"),
])
def test_what_nats_cannot_honour_is_refused(tmp_path: Path, extra: dict[str, object], reason: str) -> None:
    with pytest.raises(NatsConfigError, match=reason):
        nats_conf(_password_settings(tmp_path, **extra), tmp_path)


def test_mosquitto_hashes_and_dotted_nodes_are_refused(tmp_path: Path) -> None:
    passwd = tmp_path / "passwd"
    set_password(passwd, "cloud", "pw", use_bcrypt=True)
    set_password(passwd, "node-a", "pw")
    with pytest.raises(NatsConfigError, match=r"edgehive passwd --bcrypt .* USER") as refused:
        nats_conf(BrokerSettings(listen=("127.0.0.1:1883",), password_file=str(passwd)), tmp_path)
    assert "node-a" in str(refused.value)
    set_password(passwd, "node-a", "pw", use_bcrypt=True)
    set_password(passwd, "edge.example.com", "pw", use_bcrypt=True)
    with pytest.raises(NatsConfigError, match=r"with '\.'"):
        nats_conf(BrokerSettings(listen=("127.0.0.1:1883",), password_file=str(passwd)), tmp_path)
