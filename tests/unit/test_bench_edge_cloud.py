"""``bench edge``'s fake cloud answers a node's hello and keepalives as CloudHub does, so the bench measures the
outbox going up in batches exactly as it would to a real cloud. Compared with the real routers: EdgeHub's (which
sends the keepalives and reads the answer) and CloudHub's of the default configuration."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from cloud.cloudhub.hub import CloudHubSettings
from cloud.cloudhub.routing import CloudRouter
from edge.edgehub.outbox import Outbox
from edge.edgehub.routing import EdgeRouter
from edge.edgehub.window import Window
from edge.storage import DiskGuard
from edgehive.bench.edge import cloudhub_up_batch_bytes, keepalive_answer
from runtime.counters import Counters
from schemas import topics
from schemas.envelope import DEFAULT_MAX_SIZE, Envelope, Group, Op, Send

NODE = "edge-node"


@pytest.fixture
def outbox(tmp_path: Path) -> Iterator[Outbox]:
    box = Outbox(tmp_path / "outbox.db", 4 * 1024 * 1024)
    yield box
    box.close()


def edge_router(outbox: Outbox, tmp_path: Path, batch_bytes: int | None) -> EdgeRouter:
    return EdgeRouter(NODE, outbox, DiskGuard(tmp_path, 0), Counters(), DEFAULT_MAX_SIZE, batch_bytes=batch_bytes,
                      window=Window(200, 10.0))


def default_cloudhub() -> CloudRouter:
    """CloudHub's router as CloudHub builds it from its default settings."""
    s = CloudHubSettings()
    return CloudRouter(Counters(), window_per_node=s.window_per_node, keepalive_timeout_s=s.keepalive_timeout_s,
                       batch_max_members=s.batch_max_members,
                       batch_max_bytes=min(s.batch_max_bytes, s.max_envelope_size), max_size=s.max_envelope_size)


def hello(router: EdgeRouter) -> Envelope:
    (send,) = router.link_changed(True, "test").sends
    assert isinstance(send, Send)
    return send.envelope


def cloudhub_answers(hub: CloudRouter, keepalive: Envelope) -> list[Envelope]:
    sends = hub.from_node(keepalive, topics.link_up(NODE), 0.0).sends
    return [s.envelope for s in sends if isinstance(s, Send) and s.topic == topics.link_down(NODE)]


def test_the_fake_cloud_grants_what_a_default_cloudhub_grants(outbox: Outbox, tmp_path: Path) -> None:
    router = edge_router(outbox, tmp_path, DEFAULT_MAX_SIZE)
    keepalive = hello(router)
    (real,) = cloudhub_answers(default_cloudhub(), keepalive)
    fake = keepalive_answer(keepalive, cloudhub_up_batch_bytes())
    assert fake is not None
    assert (fake.group, fake.op, fake.parent, fake.body) == (real.group, real.op, real.parent, real.body)
    assert cloudhub_up_batch_bytes() == default_cloudhub().up_batch_bytes() is not None

    router.from_cloud(fake, 1.0)
    assert router.upstream_batch_bytes(1.0) == min(DEFAULT_MAX_SIZE, cloudhub_up_batch_bytes() or 0)


def test_a_node_with_link_batches_off_gets_no_answer_from_either(outbox: Outbox, tmp_path: Path) -> None:
    router = edge_router(outbox, tmp_path, None)
    keepalive = hello(router)
    assert cloudhub_answers(default_cloudhub(), keepalive) == []
    assert keepalive_answer(keepalive, cloudhub_up_batch_bytes()) is None
    assert router.upstream_batch_bytes(1.0) is None


@pytest.mark.parametrize("body", [{"batch_bytes": "lots"}, {"batch_bytes": -1}, ["not", "a", "map"]])
def test_a_keepalive_that_does_not_parse_gets_no_grant(body: object) -> None:
    keepalive = Envelope(node=NODE, src="edgehub", group=Group.HUB, op=Op.KEEPALIVE, body=body)
    assert keepalive_answer(keepalive, cloudhub_up_batch_bytes()) is None
