"""EventBus: the door between devices (KubeEdge's JSON topics) and DeviceTwin (envelopes).

It does not judge what devices say: DeviceTwin validates and answers. It only
turns each device message into an envelope, and DeviceTwin's answers back into
JSON on the device topics. Topics a user lists in ``upload_topics`` go to the
cloud as ``upload`` envelopes, through EdgeHub's outbox; what the cloud router sends
for the node's bus (``user`` ``insert``, schemas/rules.py) is published as it came.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from runtime.bus import Bus
from runtime.component import ComponentSettings
from schemas import topics
from schemas.devicebus import MEMBERSHIP_GET, DeviceRequest, parse_publications, requests_body
from schemas.envelope import Envelope, EnvelopeError, Group, Op, RawSend, Send
from schemas.fields import BodyError
from schemas.rules import BusMessage

log = logging.getLogger(__name__)

MODULE = "eventbus"


ANSWER_WINDOW = 1000
"""EventBus's publish window by default: DeviceTwin answers up to ``MAX_BATCH`` updates in one envelope, two
publishes each (a result and a document), which go out together (``Bus.send``); the components' window of 100
cut them into ten writes, each waiting for the PUBACKs of the one before. The held messages are each a few
hundred bytes: under a megabyte."""


@dataclass(frozen=True)
class EventBusSettings(ComponentSettings):
    window: int = field(default=ANSWER_WINDOW, metadata={"help": "most unacknowledged publishes at once"})
    upload_topics: tuple[str, ...] = field(default=("$hw/events/upload/#",), metadata={
        "help": "MQTT filters whose messages go to the cloud as they are; repeatable"})


FLUSH_INTERVAL_S = 0.02
"""At most one batch to DeviceTwin this often. A reading that comes after a quiet spell goes at once; one that
comes in a burst waits for the rest of the interval since the last batch, with whatever else arrives. Measured
with ``edgehive bench twin`` on amqtt (CPU of every process per update, one run each): a fixed 5 ms window
made batches of about two at 410 updates/s, and the edge broker spent 1.59 ms, EventBus 0.80 and DeviceTwin
0.41 per update; 20 ms between batches: 1.36, 0.72 and 0.36, and 502 updates/s (4.39 to 3.66 ms per update
over the whole machine). The fixed window also held every lone reading back 5 ms; this holds none back."""
MAX_BATCH = 500


class EventBus:
    """Device requests travel to DeviceTwin in batches, at most one each ``FLUSH_INTERVAL_S``, so a busy node
    costs one message per batch instead of one per reading, and a quiet one no wait at all."""

    def __init__(self, settings: EventBusSettings, bus: Bus) -> None:
        self.settings = settings
        self.node = settings.node
        self.twin_inbox = topics.inbox(topics.Side.EDGE, "devicetwin")
        self.bus = bus
        self._pending: list[DeviceRequest] = []
        self._cond = threading.Condition()
        self._stop = False
        self._flusher = threading.Thread(target=self._flush_loop, name="batcher", daemon=True)

    def start(self) -> None:
        self._flusher.start()
        # Taken on the network thread (they only join the next batch for DeviceTwin), not behind the answers
        for topic_filter in topics.device_requests():
            self.bus.take_raw(topic_filter, self.on_device)
        self.bus.take_raw(topics.membership(self.node, "get"), self.on_membership_get)
        for topic_filter in self.settings.upload_topics:
            self.bus.handle_raw(topic_filter, self.on_upload)
        self.bus.handle(self.bus.inbox, self.on_answers)
        self.bus.handle(topics.from_cloud(MODULE), self.on_cloud)

    def close(self) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify()
        self._flusher.join(timeout=5)

    def on_device(self, topic: str, payload: bytes) -> None:
        parsed = topics.parse_device(topic)
        if parsed is None:
            self.bus.counters.inc("bad_device_topic")
            log.info("dropped a message on %.200s: not a valid namespace/device name", topic)
            return
        self._queue(DeviceRequest(*parsed, payload))

    def on_membership_get(self, _topic: str, payload: bytes) -> None:
        self._queue(DeviceRequest("", "", MEMBERSHIP_GET, payload))

    def _queue(self, request: DeviceRequest) -> None:
        with self._cond:
            self._pending.append(request)
            if len(self._pending) in (1, MAX_BATCH):  # what the flusher waits for; not every reading of a burst
                self._cond.notify()

    def _flush_loop(self) -> None:
        last_flush = 0.0
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._pending or self._stop)
                if self._stop and not self._pending:
                    return
                # In a burst, let it gather until an interval has passed since the last batch (not
                # synchronisation: a pacing); a full batch, or closing, goes at once.
                self._cond.wait_for(lambda: len(self._pending) >= MAX_BATCH or self._stop,
                                    timeout=last_flush + FLUSH_INTERVAL_S - time.monotonic())
                batch, self._pending = self._pending[:MAX_BATCH], self._pending[MAX_BATCH:]
            last_flush = time.monotonic()
            if batch:
                self._hand_over(batch)

    def _hand_over(self, batch: list[DeviceRequest]) -> None:
        """Publish one batch for DeviceTwin. This thread is the only way from the devices to DeviceTwin, so it
        must outlive a failed publish: one that raised ended it, and every later reading of the node was
        taken by the broker and went nowhere. A batch the broker did not take in time (its window full of
        unacknowledged publishes) is put back to go first; one that can never be sent is dropped."""
        try:
            envelope = self.bus.envelope(Group.TWIN, Op.UPDATE, body=requests_body(batch))
            self.bus.publish(self.twin_inbox, envelope, timeout=30)
        except EnvelopeError as exc:
            self.bus.counters.inc("refused", len(batch))
            log.warning("dropped %d device requests that do not fit one envelope: %s", len(batch), exc)
        except Exception:
            self.bus.counters.inc("handler_errors")
            log.exception("could not hand %d device requests to DeviceTwin; trying again", len(batch))
            with self._cond:
                self._pending[:0] = batch
                self._cond.wait(timeout=1.0)  # a pause before the retry (or until close), not synchronisation

    def on_upload(self, topic: str, payload: bytes) -> Iterable[Send | RawSend] | None:
        envelope = self.bus.envelope(Group.USER, Op.UPLOAD, body={"topic": topic, "payload": payload})
        try:
            envelope.encode(self.settings.max_envelope_size)
        except EnvelopeError as exc:
            # Refused here with a reason, rather than failing later in the bus as a "handler error".
            self.bus.counters.inc("refused")
            log.warning("dropped a %d-byte upload on %.200s: %s", len(payload), topic, exc.reason)
            return None
        return [Send(topics.to_cloud(), envelope)]

    def on_cloud(self, envelope: Envelope, _topic: str) -> Iterable[Send | RawSend] | None:
        """A message from the cloud router for a topic on this node's broker: published, then acknowledged,
        so that CloudHub stops resending it (a resend after a lost acknowledgement publishes it twice: at
        least once, as KubeEdge's QoS 1 topics are)."""
        if envelope.group != Group.USER or envelope.op != Op.INSERT:
            self.bus.counters.inc("refused")
            return [Send(topics.to_cloud(), envelope.error(MODULE, 400, f"the event bus takes user insert, not "
                                                                        f"{envelope.group.value} {envelope.op.value}"))]
        try:
            message = BusMessage.parse(envelope.body)
        except BodyError as exc:
            self.bus.counters.inc("refused")
            return [Send(topics.to_cloud(), envelope.error(MODULE, 400, str(exc)))]
        if not message.publishable:
            self.bus.counters.inc("refused")
            return [Send(topics.to_cloud(), envelope.error(MODULE, 400, f"topic {message.topic!r} holds an MQTT "
                                                                        f"wildcard"))]
        self.bus.counters.inc("published_from_cloud")
        return [RawSend(message.topic, message.payload), Send(topics.to_cloud(), envelope.reply(MODULE))]

    def on_answers(self, envelope: Envelope, _topic: str) -> Iterable[Send | RawSend] | None:
        """DeviceTwin's answers, each published on a device topic as the JSON DeviceTwin wrote.

        Each is checked before anything is published (schemas.devicebus.EncodedPublication: a device topic,
        bytes, a QoS and a retain flag paho takes): one that fails is refused and counted on its own. Left to
        paho, it would raise only as the bus publishes it, taking the items after it down with it.
        """
        if envelope.src != "devicetwin":
            return None
        try:
            answers = parse_publications(envelope.body)
        except BodyError as exc:
            self._refuse(envelope, exc)
            return None
        out: list[Send | RawSend] = []
        for answer in answers:
            if isinstance(answer, BodyError):
                self._refuse(envelope, answer)
                continue
            out.append(RawSend(answer.topic, answer.payload, answer.qos, answer.retain))
        return out

    def _refuse(self, envelope: Envelope, why: Exception) -> None:
        self.bus.counters.inc("refused")
        log.warning("refused an answer in %s from %s: %s", envelope.id, envelope.src, why)
