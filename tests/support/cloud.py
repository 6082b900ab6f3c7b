"""A stand-in for the cloud side in edge tests: it speaks on the real cloud broker's link topics.

It publishes downstream envelopes on ``edgehive/link/<node>/down`` and waits for
MetaManager's acknowledgement; it acknowledges every upstream entry (as CloudHub
will), keeps what came up for assertions, and answers queries from ``objects``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from runtime.connection import Connection, ConnectionSettings, Incoming
from runtime.url import BrokerUrl
from schemas import topics
from schemas.envelope import Envelope, EnvelopeError, Group, Op, decode
from schemas.resource import ResourceKey


class FakeCloud:
    def __init__(self, url: BrokerUrl, node: str, *, ack_upstream: bool = True) -> None:
        self.node = node
        self.ack_upstream = ack_upstream
        self.objects: dict[str, dict[str, Any]] = {}
        self.received: list[Envelope] = []
        self.replies: dict[str, Envelope] = {}
        self._changed = threading.Condition()
        self.connection = Connection(ConnectionSettings(url=url, client_id=f"fake-cloud-{node}", window=500),
                                     name="fake-cloud")
        self.connection.subscribe(topics.link_up(node))
        self.connection.on_message(self._on_message)

    def start(self) -> FakeCloud:
        self.connection.start()
        assert self.connection.wait_connected(15), "the fake cloud could not reach the cloud broker"
        return self

    def close(self) -> None:
        self.connection.close(drain_timeout=1)

    def _on_message(self, incoming: Incoming) -> None:
        incoming.ack()
        try:
            envelope = decode(incoming.payload)
        except EnvelopeError:
            return
        answer: Envelope | None = None
        if envelope.op in (Op.RESPONSE, Op.ERROR) and envelope.parent is not None:
            with self._changed:
                self.replies[envelope.parent] = envelope
                self._changed.notify_all()
            return
        if envelope.op == Op.QUERY and envelope.res is not None:
            obj = self.objects.get(str(envelope.res))
            answer = envelope.reply("cloudhub", obj) if obj is not None else envelope.error("cloudhub", 404, "none")
        elif envelope.op not in (Op.KEEPALIVE,) and self.ack_upstream:
            answer = envelope.reply("cloudhub", {"ok": True})
        with self._changed:
            self.received.append(envelope)
            self._changed.notify_all()
        if answer is not None:
            # Not from the network thread: publishing may wait for the window.
            threading.Thread(target=self._send_now, args=(answer,), daemon=True).start()

    def _send_now(self, envelope: Envelope) -> None:
        self.connection.publish(topics.link_down(self.node), envelope.encode(), timeout=10)

    # -- downstream --------------------------------------------------------------

    def envelope(self, op: Op, key: ResourceKey, body: Any = None, rv: str | None = None,
                 group: Group = Group.RESOURCE) -> Envelope:
        return Envelope(node=self.node, src="cloudhub", group=group, op=op, res=key, rv=rv, body=body)

    def send(self, envelope: Envelope) -> Envelope:
        self.connection.publish(topics.link_down(self.node), envelope.encode(), timeout=10)
        return envelope

    def send_and_wait(self, envelope: Envelope, timeout: float = 20.0) -> Envelope:
        """Send and wait for the edge's reply (MetaManager's acknowledgement or error)."""
        with self._changed:
            self.replies.pop(envelope.id, None)  # a resend of the same message gets its own answer
        self.send(envelope)
        return self.wait_reply(envelope.id, timeout)

    def wait_reply(self, msg_id: str, timeout: float = 20.0) -> Envelope:
        with self._changed:
            if not self._changed.wait_for(lambda: msg_id in self.replies, timeout):
                raise AssertionError(f"no reply to {msg_id} within {timeout} s")
            return self.replies[msg_id]

    # -- upstream -----------------------------------------------------------------

    def wait_for(self, predicate: Callable[[Envelope], bool], timeout: float = 30.0, what: str = "") -> Envelope:
        """The most recent upstream envelope matching ``predicate``, waiting for one to arrive."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for envelope in reversed(self.received):
                    if predicate(envelope):
                        return envelope
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no upstream envelope {what} within {timeout} s "
                                         f"({len(self.received)} received)")
                self._changed.wait(left)

    def pod_status(self, namespace: str, name: str) -> dict[str, Any] | None:
        key = str(ResourceKey(namespace, "podstatus", name))
        with self._changed:
            for envelope in reversed(self.received):
                if str(envelope.res) == key:
                    status = envelope.body["status"]
                    return status if isinstance(status, dict) else None
        return None

    def upstream(self, kind: str) -> list[Envelope]:
        with self._changed:
            return [e for e in self.received if e.res is not None and e.res.kind == kind]
