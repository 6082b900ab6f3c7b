"""The edge mosquitto's bridge sections (``--bridge native``): the exact text, what is refused, and that a real
mosquitto 2.0 takes it (it has no config-check flag: it is started, and its log read)."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from pathlib import Path

import pytest

from broker.embedded import BrokerSettings
from broker.launch import broker_argv
from broker.mosquitto import write_config
from broker.nativebridge import NativeBridgeError, bridge_sections, holds_secret
from runtime.connsettings import TlsSettings
from runtime.url import BrokerUrl
from tests.fixtures.processes import ManagedProcess, free_port, require_executable, wait_until

PKI = "/var/lib/edgehive/edge/pki"
NATS_JOINED = """\
# --- edgehive: node edge-1's link to the cloud (--bridge native) ---
connection edgehive-edge-1
address m1.example:8883 m2.example:8883 m3.example:8883
round_robin true
remote_clientid edgehive-bridge-edge-1
local_clientid edgehive-bridge-edge-1-local
bridge_protocol_version mqttv311
try_private false
bridge_attempt_unsubscribe false
cleansession false
keepalive_interval 10
restart_timeout 1 5
start_type automatic
notifications true
notification_topic edgehive/link/edge-1/hello
bridge_cafile /var/lib/edgehive/edge/pki/ca.crt
bridge_certfile /var/lib/edgehive/edge/pki/node.crt
bridge_keyfile /var/lib/edgehive/edge/pki/node.key
topic edgehive/link/edge-1/down in 0
topic edgehive/link/edge-1/up out 1
topic "" out 1 edgehive/edge/link-hello edgehive/link/edge-1/hello

connection edgehive-edge-1-stream
address m1.example:8883 m2.example:8883 m3.example:8883
round_robin true
remote_clientid edgehive-bridge-edge-1-stream
local_clientid edgehive-bridge-edge-1-stream-local
bridge_protocol_version mqttv311
try_private false
bridge_attempt_unsubscribe false
cleansession true
keepalive_interval 10
restart_timeout 1 5
notifications false
bridge_cafile /var/lib/edgehive/edge/pki/ca.crt
bridge_certfile /var/lib/edgehive/edge/pki/node.crt
bridge_keyfile /var/lib/edgehive/edge/pki/node.key
topic edgehive/link/edge-1/stream/down in 1
topic edgehive/link/edge-1/stream/up out 1
"""
JOINED_TLS = TlsSettings(f"{PKI}/ca.crt", f"{PKI}/node.crt", f"{PKI}/node.key")


def _text(lines: list[str]) -> str:
    return "\n".join(lines) + "\n"


def test_a_joined_node_on_a_nats_cluster_gets_every_member_its_certificate_and_qos_0_down() -> None:
    cloud = BrokerUrl.parse_list("mqtts://m1.example:8883,m2.example:8883,m3.example:8883")
    lines = bridge_sections("edge-1", cloud, JOINED_TLS, down_qos=0)
    assert _text(lines) == NATS_JOINED
    assert not holds_secret(lines)


def test_a_joined_node_on_one_mosquitto_has_one_address_and_qos_1_down() -> None:
    lines = bridge_sections("edge-1", BrokerUrl.parse_list("mqtts://cloud.example:8883"), JOINED_TLS)
    expected = (NATS_JOINED.replace("m1.example:8883 m2.example:8883 m3.example:8883", "cloud.example:8883")
                .replace("edgehive/link/edge-1/down in 0", "edgehive/link/edge-1/down in 1"))
    assert _text(lines) == expected


def test_the_password_stack_has_credentials_in_both_sections_and_no_tls() -> None:
    lines = bridge_sections("edge-1", BrokerUrl.parse_list("mqtt://edge-1:s3cret@127.0.0.1:1883"))
    expected = NATS_JOINED.replace("m1.example:8883 m2.example:8883 m3.example:8883", "127.0.0.1:1883")
    expected = expected.replace("edgehive/link/edge-1/down in 0", "edgehive/link/edge-1/down in 1")
    expected = expected.replace(
        f"bridge_cafile {PKI}/ca.crt\nbridge_certfile {PKI}/node.crt\nbridge_keyfile {PKI}/node.key\n",
        "remote_username edge-1\nremote_password s3cret\n")
    assert _text(lines) == expected
    assert holds_secret(lines)


def test_an_mqtts_cloud_without_a_ca_file_trusts_the_systems_cas() -> None:
    lines = bridge_sections("edge-1", (BrokerUrl.parse("mqtts://edge-1:pw@cloud.example:8883"),))
    assert lines.count("bridge_capath /etc/ssl/certs") == 2
    assert not any(line.startswith("bridge_cafile") for line in lines)


@pytest.mark.parametrize(("node", "cloud", "tls", "qos", "says"), [
    ("Edge_1", "mqtt://h:1883", None, 1, "not a valid node name"),
    ("edge-1", "mqtt://h:1883", None, 2, "down_qos must be 0 or 1"),
    ("edge-1", "mqtt://h:1883", JOINED_TLS, 1, "plain mqtt://"),
    ("edge-1", "mqtts://h:8883", TlsSettings(None, f"{PKI}/node.crt", None), 1, "give both or neither"),
    ("edge-1", "mqtt://u:p w@h:1883", None, 1, None),  # a blank inside is read whole by mosquitto
    ("edge-1", "mqtt://u:%23pw@h:1883", None, 1, None),  # so is a leading '#': only a line's first one is a comment
    ("edge-1", "mqtt://u:%20pw@h:1883", None, 1, "password"),
    ("edge-1", "mqtt://u:p%0Aw@h:1883", None, 1, "password"),
])
def test_what_mosquitto_could_not_read_as_meant_is_refused_by_name(node: str, cloud: str, tls: TlsSettings | None,
                                                                  qos: int, says: str | None) -> None:
    urls = BrokerUrl.parse_list(cloud)
    if says is None:
        assert holds_secret(bridge_sections(node, urls, tls, qos))
        return
    with pytest.raises(ValueError, match=says):
        bridge_sections(node, urls, tls, qos)


def test_no_cloud_is_refused() -> None:
    with pytest.raises(NativeBridgeError, match="address"):
        bridge_sections("edge-1", ())


def test_the_native_bridge_needs_mosquitto_as_the_edge_broker(tmp_path: Path) -> None:
    lines = bridge_sections("edge-1", BrokerUrl.parse_list("mqtt://edge-1:pw@127.0.0.1:1883"))
    with pytest.raises(ValueError, match="needs a mosquitto broker, not amqtt"):
        broker_argv("amqtt", BrokerSettings(listen=("127.0.0.1:1884",)), tmp_path, lines)


def test_the_conf_with_a_password_is_written_mode_0600_with_the_sections_last(tmp_path: Path) -> None:
    lines = bridge_sections("edge-1", BrokerUrl.parse_list("mqtt://edge-1:pw@127.0.0.1:1883"))
    conf = write_config(BrokerSettings(listen=("127.0.0.1:1884",)), tmp_path, bridge_lines=lines)
    assert stat.S_IMODE(conf.stat().st_mode) == 0o600
    text = conf.read_text()
    assert text.index("listener 1884 127.0.0.1") < text.index("connection edgehive-edge-1\n")
    assert text.endswith(_text(lines))
    plain = write_config(BrokerSettings(listen=("127.0.0.1:1884",)), tmp_path / "plain")
    assert "connection" not in plain.read_text()


def _logged(path: Path, *texts: str) -> Callable[[], bool]:
    return lambda: all(text in path.read_text() for text in texts)


def test_a_real_mosquitto_takes_the_sections_and_its_bridges_connect(tmp_path: Path) -> None:
    """mosquitto 2.0 exits at once on a line it cannot take. With a password, both bridges reach a real (anonymous)
    cloud mosquitto as the node's fixed client ids; with TLS files (absent here), it starts and tries them."""
    binary = require_executable("mosquitto", "/usr/sbin/mosquitto")
    cloud_port = free_port()
    cloud_conf = tmp_path / "cloud.conf"
    cloud_conf.write_text(f"listener {cloud_port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
                          "log_dest stderr\nlog_type all\n" + ("user root\n" if os.geteuid() == 0 else ""))
    cloud_log = tmp_path / "cloud.log"
    cloud = ManagedProcess("cloud-mosquitto", [binary, "-c", str(cloud_conf)], cloud_log).start()
    try:
        wait_until(lambda: "running" in cloud_log.read_text(), timeout=15, what="the cloud mosquitto", alive=cloud)
        for name, urls, tls, connects in [
            ("password", BrokerUrl.parse_list(f"mqtt://edge-1:pw@127.0.0.1:{cloud_port}"), None, True),
            ("certs", BrokerUrl.parse_list(f"mqtts://127.0.0.1:{cloud_port},localhost:{cloud_port}"),
             TlsSettings(str(tmp_path / "ca.crt"), str(tmp_path / "node.crt"), str(tmp_path / "node.key")), False),
        ]:
            lines = bridge_sections("edge-1", urls, tls, down_qos=0)
            argv = broker_argv("mosquitto", BrokerSettings(listen=(f"127.0.0.1:{free_port()}",)), tmp_path / name,
                               lines)
            assert argv[0] == binary
            log = tmp_path / f"{name}.log"
            edge = ManagedProcess(f"mosquitto-{name}", argv, log).start()
            try:
                wait_until(_logged(log, "Connecting bridge (step 1) edgehive-edge-1-stream",
                                   "Connecting bridge (step 1) edgehive-edge-1 "), timeout=15,
                           what=f"mosquitto ({name}) starting its bridges", alive=edge)
                if connects:
                    for client in ("edgehive-bridge-edge-1 ", "edgehive-bridge-edge-1-stream "):
                        wait_until(_logged(cloud_log, f"as {client}"), timeout=15,
                                   what=f"{client} on the cloud broker", alive=edge)
                    assert "u'edge-1'" in cloud_log.read_text()
                assert edge.returncode() is None
            finally:
                edge.stop()
    finally:
        cloud.stop()
