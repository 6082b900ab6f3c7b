"""The Router: KubeEdge's rules.kubeedge.io Rules carried between nodes' event buses and HTTP.

- eventbus to rest: CloudHub routes a node's ``upload`` envelopes (group ``user``) here; each Rule
  whose eventbus source names that node and topic gets the payload POSTed to its URL (restout.py).
  The upload is acknowledged once queued, so the node's outbox lets it go: from then on the
  router's bounded queue and the Rule's status account for it.
- rest to eventbus: an HTTP call on the router's door (restin.py) goes down the node's link as a
  ``user`` ``insert`` through CloudHub's reliable queue; the node's EventBus publishes it.
- Rules that cannot be carried (servicebus, a missing endpoint or key) say why in their status.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

from cloud.informer import Informer
from cloud.kube import Kube, KubeError
from cloud.packed import Packed
from cloud.replicas.elected import LeaderElectSettings
from cloud.router.restin import Call, Refused, RestDoor
from cloud.router.restout import Delivery, RestSender
from cloud.router.status import StatusBook
from cloud.router.table import RuleId, RuleTable
from runtime.address import Address
from runtime.bus import Bus
from runtime.component import ComponentSettings
from schemas import kinds, topics
from schemas.envelope import Envelope, EnvelopeError, Group, Op, Send
from schemas.fields import BodyError
from schemas.resource import ResourceKey
from schemas.rules import BusMessage, Rule, RuleEndpoint

log = logging.getLogger(__name__)

MODULE = "router"
CLOUDHUB = topics.inbox(topics.Side.CLOUD, "cloudhub")
RULE, RULEENDPOINT = "rule", "ruleendpoint"


@dataclass(frozen=True)
class RouterSettings(ComponentSettings, LeaderElectSettings):
    node: str = field(default="cloud", metadata={"help": "name used on messages that concern no node"})
    broker: str = field(default="mqtt://cloud:cloud@127.0.0.1:1883", metadata={"help": "the cloud broker URL"})
    kubeconfig: str | None = field(default=None, metadata={"help": "kubeconfig file (default: in-cluster)"})
    kube_server: str | None = field(default=None, metadata={
        "help": "API server URL to use instead of the kubeconfig's"})
    listen: str = field(default="0.0.0.0:9443", metadata={
        "help": "HOST:PORT of the HTTP door for rest-to-eventbus Rules (KubeEdge's router port); empty: no door, "
                "only eventbus-to-rest Rules are carried"})
    queue_bound: int = field(default=1000, metadata={
        "help": "uploads waiting for their REST target at most; past it the oldest is dropped and counted"})
    post_attempts: int = field(default=5, metadata={"help": "POSTs of one upload before it counts as failed"})
    post_timeout_s: float = field(default=10.0, metadata={"help": "seconds one POST may take"})
    status_interval_s: float = field(default=1.0, metadata={"help": "seconds between writes of a Rule's status"})


class Router:
    def __init__(self, settings: RouterSettings, bus: Bus) -> None:
        self.settings = settings
        self.bus = bus
        self.kube = Kube.connect(settings.kubeconfig, settings.kube_server)
        self.table = RuleTable()
        self.book = StatusBook(self._write_status)
        self.sender = RestSender(self.book, bound=settings.queue_bound, attempts=settings.post_attempts,
                                 timeout_s=settings.post_timeout_s)
        self.informers = {kind: Informer(self.kube, kind, self._sink) for kind in (RULEENDPOINT, RULE, kinds.NODE)}
        self.door: RestDoor | None = None
        if settings.listen:
            address = Address.parse(settings.listen, any_host=True, what="--listen")
            self.door = RestDoor((address.bind_host, address.port), self.deliver_call)
        self._stop = threading.Event()
        self._flusher = threading.Thread(target=self._status_loop, name="rule-status", daemon=True)

    def start(self) -> None:
        self.bus.handle(topics.from_edge(MODULE), self.on_edge)
        for informer in self.informers.values():
            informer.start()
        self.sender.start()
        self._flusher.start()
        if self.door is not None:
            self.door.serve_in_thread()
            log.info("router listening on %s:%d", *self.door.server_address[:2])
        else:
            log.info("router without its HTTP door (--listen empty): rest-to-eventbus Rules are not carried")

    def close(self) -> None:
        self._stop.set()
        if self.door is not None:
            self.door.shutdown()
            self.door.server_close()
        for informer in self.informers.values():
            informer.stop()
        self.sender.close()
        self._flusher.join(timeout=5)
        self.book.flush()
        self.kube.close()

    # -- the rules -----------------------------------------------------------------------------

    def _sink(self, kind: str, event: str, obj: dict[str, Any], _packed: Packed) -> None:
        present = event != "DELETED"
        if kind == RULEENDPOINT:
            self.table.set_endpoint(RuleEndpoint.view(obj), present)
        elif kind == RULE:
            rule = Rule.view(obj)
            key = (rule.namespace, rule.name)
            if present:
                self.book.seen(key, rule.status)
            else:
                self.book.forget(key)
            self.table.set_rule(rule, present)

    def _status_loop(self) -> None:
        while not self._stop.wait(self.settings.status_interval_s):
            if all(informer.synced.is_set() for informer in self.informers.values()):
                for key, reason in self.table.refusals().items():  # once both kinds are listed: no false alarms
                    self.book.refused(key, reason)
            self.book.flush()

    def _write_status(self, rule: RuleId, patch: dict[str, Any]) -> None:
        """Through the status subresource that our CRD has; KubeEdge's own CRD (left as it is when a cluster
        already has it) has none, and there the status is part of the object: its 404 leads there."""
        try:
            self.kube.patch_custom_status(RULE, rule[0], rule[1], patch)
        except KubeError as exc:
            if exc.status != 404 or self.informers[RULE].get(rule[0], rule[1]) is None:
                raise
            self.kube.patch_custom(RULE, rule[0], rule[1], patch)

    # -- eventbus to rest ----------------------------------------------------------------------

    def on_edge(self, envelope: Envelope, _topic: str) -> Iterable[Send] | None:
        if envelope.group != Group.USER or envelope.op != Op.UPLOAD:
            return [self._reply(envelope.error(MODULE, 400, f"the router takes uploads, not {envelope.group.value} "
                                                            f"{envelope.op.value}"))]
        try:
            message = BusMessage.parse(envelope.body)
        except BodyError as exc:
            return [self._reply(envelope.error(MODULE, 400, str(exc)))]
        routes = self.table.for_upload(envelope.node, message.topic)
        for route in routes:
            self.sender.put(Delivery(route.rule, route.url, envelope.node, message.payload))
        self.bus.counters.inc("uploads_routed" if routes else "uploads_unrouted")
        return [self._reply(envelope.reply(MODULE, {"ok": True, "rules": len(routes)}))]

    def _reply(self, envelope: Envelope) -> Send:
        if envelope.op == Op.ERROR:
            self.bus.counters.inc("refused")
        return Send(CLOUDHUB, envelope)

    # -- rest to eventbus ----------------------------------------------------------------------

    def deliver_call(self, call: Call) -> None:
        """One HTTP call to its node's event bus, or Refused with why (nothing sent then)."""
        if self.informers[kinds.NODE].get(None, call.node) is None:
            raise Refused(HTTPStatus.NOT_FOUND, f"node {call.node} does not exist")
        found = self.table.for_call(call.namespace, call.path)
        if found is None:
            raise Refused(HTTPStatus.NOT_FOUND, f"no Rule in namespace {call.namespace} takes /{call.path}")
        route, remainder = found
        topic = f"{route.topic.rstrip('/')}/{remainder}" if remainder else route.topic
        message = BusMessage(topic, call.body)
        if not message.publishable:
            raise Refused(HTTPStatus.BAD_REQUEST, f"topic {topic!r} holds an MQTT wildcard")
        envelope = Envelope(node=call.node, src=MODULE, group=Group.USER, op=Op.INSERT,
                            res=ResourceKey(call.namespace, kinds.BUSMESSAGE, uuid.uuid4().hex),
                            body=message.as_body())
        try:
            envelope.encode(self.settings.max_envelope_size)
        except EnvelopeError as exc:
            raise Refused(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, exc.reason) from exc
        try:
            self.bus.publish(CLOUDHUB, envelope, timeout=10)
        except Exception as exc:
            self.book.fail(route.rule, f"not handed to CloudHub for node {call.node}: {exc}")
            raise Refused(HTTPStatus.SERVICE_UNAVAILABLE, "the cloud broker did not take it; try again") from exc
        self.book.success(route.rule)
