"""``edgehive up --broker nats --replicas N``: the flags it refuses, the member layout, and the passwords it keeps."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import cast

import pytest

from broker.passwords import read_password_file, verify_password
from edgehive.natsstack import NatsLayout
from edgehive.stack import Credentials, StatusWatch, cloudhub_children, edgecontroller_children
from edgehive.up_cli import _broker_problem, add_up_arguments
from runtime.address import Address
from runtime.url import BrokerUrl


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_up_arguments(parser)
    return parser.parse_args(list(argv))


@pytest.mark.parametrize(("argv", "flag"), [
    (("--replicas", "3"), "--broker nats"),
    (("--replicas", "0", "--broker", "nats"), "--replicas"),
    (("--nats-port", "5000"), "--nats-port"),
    (("--broker", "nats", "--replicas", "3", "--cloud-listen", "127.0.0.1:4223"), "--nats-port"),
])
def test_refused_combinations_name_the_flag(argv: tuple[str, ...], flag: str) -> None:
    assert flag in _broker_problem(_args(*argv))


def test_supported_combinations() -> None:
    assert _broker_problem(_args()) == ""
    assert _broker_problem(_args("--broker", "nats", "--replicas", "3")) == ""


def test_unknown_broker_is_refused() -> None:
    with pytest.raises(SystemExit):
        _args("--broker", "mosquitto")


def test_layout_gives_each_member_ports_of_its_own() -> None:
    layout = NatsLayout(Address("127.0.0.1", 1883), 4222, 3)
    ports = [p for i in range(3) for p in (layout.mqtt_address(i).port, layout.client_address(i).port,
                                           layout.route_address(i).port)]
    assert len(set(ports)) == 9
    urls = BrokerUrl.parse_list(layout.url("edge-1", "p/w"))
    assert [(u.port, u.username, u.password) for u in urls] == [(1883 + i, "edge-1", "p/w") for i in range(3)]


def test_both_password_files_hold_the_same_passwords(tmp_path: Path) -> None:
    plain, passwd = Credentials.ensure(tmp_path, ["cloud", "edge-1"])
    bcrypt, passwd_bcrypt = Credentials.ensure(tmp_path, ["cloud", "edge-1"], use_bcrypt=True)
    assert plain.passwords == bcrypt.passwords
    assert passwd != passwd_bcrypt
    stored = read_password_file(passwd_bcrypt)
    assert stored["edge-1"].startswith("$2")
    assert verify_password(plain.passwords["edge-1"], stored["edge-1"])
    assert verify_password(plain.passwords["cloud"], read_password_file(passwd)["cloud"])


class _Watch:
    """What the children's health checks read of the stack's status watch."""

    def __init__(self) -> None:
        self.up: set[tuple[str, str | None]] = set()

    def component_up(self, name: str) -> bool:
        return (name, None) in self.up

    def replica_up(self, name: str, replica: str) -> bool:
        return (name, replica) in self.up


def test_replicas_run_edgecontroller_sharded_and_cloudhub_routing_to_it() -> None:
    watch = _Watch()
    children = edgecontroller_children(3, ("--kubeconfig", "K"), {}, cast(StatusWatch, watch))
    assert [c.name for c in children] == ["edgecontroller-1", "edgecontroller-2", "edgecontroller-3"]
    for i, child in enumerate(children):
        assert child.argv[child.argv.index("--replica-id") + 1] == f"ec-{i + 1}"
        assert "--leader-elect" not in child.argv, "sharded replicas are all active"
        assert not child.healthy()
        watch.up.add(("edgecontroller", f"ec-{i + 1}"))
        assert child.healthy(), "each replica's health is its own status"
    hubs = cloudhub_children(3, Path("K"), {}, cast(StatusWatch, watch))
    assert all("--edgecontroller-shards" in hub.argv for hub in hubs)


def test_one_replica_runs_everything_as_before() -> None:
    watch = _Watch()
    (controller,) = edgecontroller_children(1, ("--kubeconfig", "K"), {}, cast(StatusWatch, watch))
    (hub,) = cloudhub_children(1, Path("K"), {}, cast(StatusWatch, watch))
    assert controller.name == "edgecontroller"
    for flag in ("--replica-id", "--leader-elect", "--edgecontroller-shards"):
        assert flag not in [*controller.argv, *hub.argv]


def test_cloudhub_publishes_down_and_forwards_at_the_qos_of_its_broker() -> None:
    """On NATS every CloudHub, lone or replica, publishes down and passes the nodes' messages on at QoS 0;
    elsewhere at CloudHub's defaults (1)."""
    watch = _Watch()
    for replicas in (1, 3):
        for hub in cloudhub_children(replicas, Path("K"), {}, cast(StatusWatch, watch), nats=True):
            for flag in ("--down-qos", "--forward-qos"):
                assert hub.argv[hub.argv.index(flag) + 1] == "0"
        for hub in cloudhub_children(replicas, Path("K"), {}, cast(StatusWatch, watch)):
            assert "--down-qos" not in hub.argv
            assert "--forward-qos" not in hub.argv
