"""A node's link on a NATS cluster when the member under it dies: the bridge and the cloud end move on.

Both the bridge (``--cloud`` with every member's address) and the cloud end (a runtime Connection
with the other members as alternates, as cloud components get from ``--broker``) start on member 1,
which is SIGKILLed halfway through a numbered stream each way. Each end resends what the other has not
acknowledged, as the delivery protocol does; what is measured is that everything arrives in order and
that the link carries traffic again within 10 s. The bridge subscribes to the down topic at QoS 0, as on every
NATS fleet (broker/bridge.py): what the member's death drops is the resends' to deliver.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from cloud.cloudhub.queue import FIRST_RESEND_S
from runtime.connection import Connection, ConnectionSettings
from runtime.url import BrokerUrl
from schemas import topics
from schemas.envelope import Op, decode
from tests.fixtures.brokers import Broker, BrokerFactory
from tests.fixtures.mqtt import TestClient
from tests.fixtures.nats import NatsCluster, NatsClusterFactory
from tests.fixtures.processes import ManagedProcess, wait_until
from tests.support.stream import StreamEnd

NODE = "node-1"
USERS = {"cloud": "cloud-secret", NODE: "node-secret"}
TOTAL = 2_000
BACK_WITHIN_S = 15.0
"""Issue 17's goal is 10 s and four runs here took 0.2-6.4 s; the margin is for a loaded CI machine, where
JetStream was once seen to need over 10 s to elect new leaders (test_nats_broker.py's list of differences)."""


def _cluster_url(cluster: NatsCluster, user: str) -> str:
    """``mqtt://user:pass@member1,member2,member3``, as edgehive join writes it for a cluster."""
    first = cluster.members[0].url(user, USERS[user])
    return first + "".join(f",{m.host}:{m.port}" for m in cluster.members[1:])


def _link_up(edge: Broker) -> None:
    with TestClient(edge.host, edge.port) as client:
        client.subscribe(topics.link_state(NODE))
        wait_until(lambda: decode(client.expect().payload).op == Op.CONNECTED, timeout=30, what="link state up")


def test_the_link_survives_the_death_of_its_member(nats_cluster: NatsClusterFactory, edgehive_broker: BrokerFactory,
                                                    tmp_path: Path) -> None:
    cluster = nats_cluster(users=USERS)
    edge = edgehive_broker("amqtt")
    bridge = ManagedProcess("bridge", [sys.executable, "-m", "broker.bridge", "--node", NODE, "--edge", edge.url(),
                                       "--cloud", _cluster_url(cluster, NODE),
                                       "--down-qos", "0"],  # as a NATS cluster's join endpoint tells nodes
                            tmp_path / "bridge.log").start()
    members = BrokerUrl.parse_list(_cluster_url(cluster, "cloud"))
    cloud_conn = Connection(ConnectionSettings(url=members[0], alternates=members[1:], client_id="test-cloud-end",
                                               clean_start=False, window=200), name="test-cloud-end").start()
    edge_conn = Connection(ConnectionSettings(url=BrokerUrl.parse(edge.url()), client_id="test-edge-end",
                                              clean_start=False, window=200), name="test-edge-end").start()
    # The cloud end resends after CloudHub's first resend delay: what the dead member took of the down stream (QoS 0
    # to the bridge) comes again that long after, as CloudHub's queue sends it.
    down = StreamEnd("cloud", cloud_conn, topics.link_down(NODE), topics.link_up(NODE), TOTAL, ahead=200,
                     resend_after=FIRST_RESEND_S)
    up = StreamEnd("edge", edge_conn, topics.link_up(NODE), topics.link_down(NODE), TOTAL, ahead=200)
    try:
        _link_up(edge)
        assert cloud_conn.wait_connected(15)
        assert edge_conn.wait_connected(15)
        assert cloud_conn.url == members[0]
        down.start()
        up.start()

        def progress() -> int:
            return min(down.expected, up.expected)

        wait_until(lambda: progress() >= TOTAL * 0.3, timeout=120, what="30% of the stream each way")
        cluster.members[0].kill()
        killed_at, before = time.monotonic(), progress()
        wait_until(lambda: progress() >= before + 50, timeout=BACK_WITHIN_S,
                   what=f"traffic both ways again within {BACK_WITHIN_S} s of member 1's death")
        back_after = time.monotonic() - killed_at
        wait_until(lambda: down.done and up.done, timeout=180,
                   what=f"all {TOTAL} messages each way (down {down.expected}, up {up.expected})")
    finally:
        down.stop()
        up.stop()
        cloud_conn.close(drain_timeout=1)
        edge_conn.close(drain_timeout=1)
        bridge.stop()

    assert cloud_conn.url != members[0]
    assert cloud_conn.counters.get("member_switches") >= 1
    for received_by in (down, up):
        assert received_by.expected == TOTAL
        assert len(received_by.stats.seen) == TOTAL
    print(f"\nlink back {back_after:.1f} s after its member died; cloud->edge: resent {down.stats.resent}, "
          f"at the edge {up.stats}; edge->cloud: resent {up.stats.resent}, in the cloud {down.stats}")
