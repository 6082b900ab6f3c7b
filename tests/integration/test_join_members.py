"""A cloud broker of several members (a NATS cluster): the brokers' certificate names every member, the join
endpoint tells a joining node the whole list, and refuses to start with a member the certificate does not name."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

from broker.bridgecli import add_bridge_arguments, to_bridge
from broker.bridgesettings import BridgeProcessSettings
from cloud.clusterpki import ClusterPki, member_names
from cloud.kube import Kube
from edgehive.join import fetch_ca, join
from runtime import settings
from tests.fixtures.apiserver import ApiServer
from tests.fixtures.processes import ManagedProcess, free_port, wait_until

pytestmark = pytest.mark.slow

MEMBERS = "127.0.0.1:8883,nats-2.fleet.example:8884,10.9.8.7:8885"


def test_member_names_of_a_list() -> None:
    assert member_names(f"mqtts://{MEMBERS}") == ["DNS:nats-2.fleet.example", "IP:10.9.8.7", "IP:127.0.0.1"]
    assert member_names("mqtts://broker.example:8883") == ["DNS:broker.example"]


def test_every_member_named_and_handed_to_joining_nodes(apiserver: ApiServer, tmp_path: Path) -> None:
    init = subprocess.run([sys.executable, "-m", "edgehive", "init", "--kubeconfig", str(apiserver.kubeconfig),
                           "--cloud-broker", MEMBERS, "--out", str(tmp_path / "cloud")],
                          capture_output=True, text=True, timeout=120, check=False)
    assert init.returncode == 0, init.stderr
    sans = subprocess.run(["openssl", "x509", "-noout", "-ext", "subjectAltName", "-in",
                           str(tmp_path / "cloud" / "broker.crt")], capture_output=True, text=True, check=True).stdout
    for name in ("DNS:nats-2.fleet.example", "IP Address:10.9.8.7", "IP Address:127.0.0.1"):
        assert name in sans
    assert f"broker: mqtts://{MEMBERS}\n" in (tmp_path / "cloud" / "cloud.yaml").read_text()

    pki = ClusterPki(Kube.connect(str(apiserver.kubeconfig)))
    assert pki.unnamed_members(f"mqtts://{MEMBERS}") == []
    unnamed = subprocess.run([sys.executable, "-m", "cloud.joinserver", "--listen", f"127.0.0.1:{free_port()}",
                              "--kubeconfig", str(apiserver.kubeconfig),
                              "--cloud-broker", f"mqtts://{MEMBERS},nats-9.elsewhere.example:8883"],
                             capture_output=True, text=True, timeout=60, check=False)
    assert unnamed.returncode == 2
    assert "DNS:nats-9.elsewhere.example" in unnamed.stderr

    port = free_port()
    server = ManagedProcess("joinserver", [sys.executable, "-m", "cloud.joinserver", "--listen", f"127.0.0.1:{port}",
                                           "--kubeconfig", str(apiserver.kubeconfig),
                                           "--cloud-broker", f"mqtts://{MEMBERS}", "--down-qos", "0"],
                            tmp_path / "joinserver.log").start()
    try:
        address = f"127.0.0.1:{port}"
        token = pki.gettoken(60)
        wait_until(lambda: fetch_ca(address, token, timeout=2), timeout=30, what="the join endpoint", alive=server)
        identity = join(address, str(token), "member-list-node", tmp_path / "edge")
        assert f"cloud: mqtts://{MEMBERS}\n" in identity.config.read_text()
        # A NATS cluster's endpoint tells its nodes' bridges to subscribe to their down topic at QoS 0.
        parser = argparse.ArgumentParser()
        add_bridge_arguments(parser)
        bridge = settings.load(BridgeProcessSettings, parser.parse_args(["--config", str(identity.config)]), environ={})
        assert to_bridge(bridge).down_qos == 0
    finally:
        server.stop()
