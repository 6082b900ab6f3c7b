"""KubeEdge's router objects (rules.kubeedge.io/v1, schemas/crds/) and the bus messages the router carries.

A RuleEndpoint names a kind of place messages come from or go to (``rest``, ``eventbus``,
``servicebus``); a Rule joins a source endpoint to a target endpoint, each with its resource
map (a path, a topic and node, a URL). The router reads the API server's copies as views (never
raises) and judges them itself (cloud/router/table.py), so that a bad Rule gets its reason in
its status rather than a log line.

A BusMessage is one MQTT message of a node's event bus, as the edge's EventBus uploads it and as
the router sends one down for the node's EventBus to publish: the topic and the payload's bytes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from schemas.fields import ReadByReader, Reader, shape
from schemas.kubeobj import ObjectMeta

REST = "rest"
EVENTBUS = "eventbus"
SERVICEBUS = "servicebus"
ENDPOINT_TYPES = (REST, EVENTBUS, SERVICEBUS)

MAX_TOPIC = 1024
"""Longer than any topic a user writes; an MQTT topic may be 65,535 bytes, which no log line should carry."""


@dataclass(frozen=True, slots=True)
class RuleEndpoint(ReadByReader):
    meta: ObjectMeta
    type: str
    """``spec.ruleEndpointType``: rest, eventbus or servicebus (the CRD's enum)."""
    properties: dict[str, str]

    @classmethod
    def read(cls, obj: Any, reader: Reader) -> RuleEndpoint:
        found = reader.body(obj)
        spec = reader.mapping(found.get("spec"), "body.spec")
        return cls(ObjectMeta.read(found.get("metadata"), reader),
                   reader.required_text(spec.get("ruleEndpointType"), "body.spec.ruleEndpointType"),
                   reader.text_map(spec.get("properties"), "body.spec.properties"))


@dataclass(frozen=True, slots=True)
class RuleStatus:
    success: int = 0
    """``successMessages``."""
    fail: int = 0
    """``failMessages``."""
    errors: tuple[str, ...] = ()

    def as_body(self) -> dict[str, Any]:
        return {"successMessages": self.success, "failMessages": self.fail, "errors": list(self.errors)}


@dataclass(frozen=True, slots=True)
class Rule(ReadByReader):
    meta: ObjectMeta
    source: str
    source_resource: dict[str, str]
    target: str
    target_resource: dict[str, str]
    status: RuleStatus

    @property
    def namespace(self) -> str:
        return self.meta.namespace or "default"

    @property
    def name(self) -> str:
        return self.meta.name or ""

    @classmethod
    def read(cls, obj: Any, reader: Reader) -> Rule:
        found = reader.body(obj)
        spec = reader.mapping(found.get("spec"), "body.spec")
        status = reader.mapping(found.get("status"), "body.status")
        errors = status.get("errors")
        return cls(ObjectMeta.read(found.get("metadata"), reader),
                   reader.required_text(spec.get("source"), "body.spec.source"),
                   reader.text_map(spec.get("sourceResource"), "body.spec.sourceResource"),
                   reader.required_text(spec.get("target"), "body.spec.target"),
                   reader.text_map(spec.get("targetResource"), "body.spec.targetResource"),
                   RuleStatus(reader.integer(status.get("successMessages"), "body.status.successMessages") or 0,
                              reader.integer(status.get("failMessages"), "body.status.failMessages") or 0,
                              tuple(e for e in errors if isinstance(e, str)) if isinstance(errors, list) else ()))


@dataclass(frozen=True, slots=True)
class BusMessage(ReadByReader):
    """``{"topic": str, "payload": bytes}``: an upload from a node's EventBus, or a publish for it."""

    topic: str
    payload: bytes

    @classmethod
    def read(cls, obj: Any, reader: Reader) -> BusMessage:
        found = reader.body(obj)
        topic = reader.required_text(found.get("topic"), "body.topic")
        if not topic or len(topic) > MAX_TOPIC:
            topic = reader.refuse("body.topic", f"must be 1 to {MAX_TOPIC} characters", "")
        elif "\0" in topic:
            topic = reader.refuse("body.topic", "must not contain NUL", "")
        payload = found.get("payload")
        if not isinstance(payload, bytes):
            payload = reader.refuse("body.payload", f"must be bytes, not {shape(payload)}", b"")
        return cls(topic, payload)

    def as_body(self) -> dict[str, Any]:
        return {"topic": self.topic, "payload": self.payload}

    @property
    def publishable(self) -> bool:
        """A topic a client may publish on: MQTT wildcards are for subscriptions only."""
        return not ({"+", "#"} & set(self.topic))
