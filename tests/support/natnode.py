"""A whole edge node behind NAT: its broker, its bridge, its components, its podman service and so its pods, all in
a network namespace that nothing on the cloud's host can connect into (tests/support/natns.py).

The bridge dials the cloud broker at the namespace's gateway (the host's end of the veth, where the cloud broker
also listens), as a node behind a home router dials the cloud's public address; that one outgoing connection is
the node's only path to the cloud, and the cloud's only path to it. The podman service runs in the namespace, so
the pods' CNI bridge and addresses are the namespace's too, and it has a storage of its own, so the session's
podman (the other nodes') never sees these pods.

The test process watches the node's broker from inside the namespace (``natns.entered``), as a shell on the edge
machine would: the nodes' own fixtures (tests/support/edge_node.py) take the namespace for that.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from broker.embedded import BrokerSettings
from broker.launch import broker_argv
from tests.fixtures.brokers import Broker
from tests.fixtures.podman import remove_service, start_service, storage_flags
from tests.fixtures.processes import free_port
from tests.support import natns
from tests.support.edge_node import EdgeNode, Link
from tests.support.natns import NatNamespace, entered

STORAGE_PREFIX = "ehnatpm-"
"""The nodes' podman storages, /tmp/ehnatpm-<test PID>-*: short paths, for conmon's sockets."""


def sweep_stale_storages() -> list[str]:
    """Remove the podman storages, with their pods, of test processes now gone (a run killed before its
    teardown; its namespace is natns.sweep_stale's)."""
    removed = []
    for work in Path("/tmp").glob(f"{STORAGE_PREFIX}*-*"):
        owner = work.name[len(STORAGE_PREFIX):].split("-")[0]
        if owner.isdigit() and not Path(f"/proc/{owner}").exists():
            try:
                remove_service(work, storage_flags(work), None)
            except pytest.fail.Exception as exc:  # reported, and the test goes on: it is not this run's
                removed.append(f"{work} (not all: {exc})")
                continue
            removed.append(str(work))
    return removed


@pytest.fixture
def nat_namespace() -> Iterator[Callable[[], NatNamespace]]:
    """``make()`` gives a namespace behind NAT (tests/support/natns.py) for ``cluster_factory(..., behind_nat=)``;
    at the end every one goes, with what runs in it, and the test fails if any part of one survived that. What
    runs killed before their teardown left is removed first."""
    swept = [*sweep_stale_storages(), *natns.sweep_stale()]
    if swept:
        print(f"\nleft by earlier runs, removed: {', '.join(swept)}")
    made: list[NatNamespace] = []

    def make() -> NatNamespace:
        ns = natns.create()
        made.append(ns)
        return ns

    yield make
    left = []
    for ns in made:
        killed = natns.destroy(ns)
        if killed:
            print(f"\n{ns.name}: stopped at teardown: {', '.join(killed)}")
        left += natns.leftovers(ns)
    assert not left, "left behind by the NAT namespaces: " + ", ".join(left)


def start_nat_node(ns: NatNamespace, name: str, cloud_broker: Broker, password: str,
                   workdir: Path) -> tuple[EdgeNode, Link]:
    """Start node ``name`` in ``ns``, linked to ``cloud_broker`` (which must listen on ``ns.host_address``) as user
    ``name``. Each part registers its stop with the namespace as it starts, so that the namespace's teardown stops
    whatever was made, even when a later part failed to start."""
    podman_work = Path(tempfile.mkdtemp(prefix=f"{STORAGE_PREFIX}{os.getpid()}-", dir="/tmp"))  # short: conmon's
    inside = ns.argv()
    podman, service = start_service(podman_work, inside)
    ns.cleanups.append(lambda: remove_service(podman_work, podman.storage_flags, service, inside))

    broker_dir = workdir / f"{name}-broker"
    broker_dir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    settings = BrokerSettings(listen=(f"127.0.0.1:{port}",))  # the namespace's loopback: the node's own
    broker = Broker("edgehive-amqtt", "127.0.0.1", port, [*inside, *broker_argv("amqtt", settings, broker_dir)],
                    broker_dir, (None, None))
    with entered(ns.name):
        broker.start()
    ns.cleanups.append(broker.stop)

    cloud = f"mqtt://{name}:{password}@{ns.host_address}:{cloud_broker.port}"
    link = Link([*inside, sys.executable, "-m", "broker.bridge", "--node", name, "--edge", broker.url(),
                 "--cloud", cloud], workdir, broker, node=name, netns=ns.name)
    ns.cleanups.append(link.stop)
    link.up()
    edge = EdgeNode(cloud_broker, broker, podman, workdir, node=name, netns=ns.name)
    edge.data.mkdir(parents=True, exist_ok=True)
    ns.cleanups.append(edge.stop_all)
    edge.start_all()
    return edge, link
