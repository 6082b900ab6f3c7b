"""CloudHub's per-node queue: newest wins, deletes supersede, a bounded window, resends with backoff."""

from cloud.cloudhub.queue import NodeQueue
from schemas.envelope import Envelope, Group, Op
from schemas.resource import ResourceKey


def env(name: str, rv: str, op: Op = Op.UPDATE) -> Envelope:
    return Envelope(node="edge-1", src="edgecontroller", group=Group.RESOURCE, op=op,
                    res=ResourceKey("default", "configmap", name), rv=rv, body={})


def test_newer_replaces_older_unsent_and_delete_supersedes() -> None:
    q = NodeQueue(window=10)
    assert q.put(env("a", "5"))
    assert not q.put(env("a", "4"))  # older: dropped
    assert q.put(env("a", "6"))
    assert [e.rv for e in q.due(0)] == ["6"]
    delete = env("a", "6", Op.DELETE)
    assert q.put(delete)
    assert q.due(0) == [delete]
    assert len(q) == 1


def test_window_resend_and_ack() -> None:
    q = NodeQueue(window=2)
    items = [env(f"c{i}", "1") for i in range(3)]
    for item in items:
        q.put(item)
    first = q.due(0.0)
    assert first == items[:2]
    for item in first:
        q.mark_sent(item, 0.0)
    assert q.due(1.0) == []  # window full, nothing due for resend yet
    assert q.due(5.0) == items[:2]  # resent with the same ids after 5 s
    for item in items[:2]:
        q.mark_sent(item, 5.0)
    assert q.due(12.0) == []  # the second resend waits 10 s
    assert q.ack(items[0].id) == items[0]
    assert q.ack(items[0].id) is None
    assert q.due(12.0) == [items[2]]


def test_ack_of_a_replaced_message_is_ignored() -> None:
    q = NodeQueue(window=5)
    old = env("a", "1")
    q.put(old)
    q.mark_sent(old, 0)
    new = env("a", "2")
    q.put(new)
    assert q.ack(old.id) is None
    assert q.due(0) == [new]
    q.reset_sent()
    assert q.inflight == 0
