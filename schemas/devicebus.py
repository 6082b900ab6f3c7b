"""The bodies EventBus and DeviceTwin exchange: device requests in batches one way, answers to publish the other.

EventBus turns each message on a KubeEdge device topic into a DeviceRequest and sends them to
DeviceTwin in batches (``{"requests": [[namespace, name, request, payload], ...]}``); DeviceTwin
answers with the JSON to publish on device topics, written already (``{"publish": [[topic, json bytes, qos,
retain], ...]}``): EventBus passes the bytes on as they are, without reading them into objects and writing
them again (in ``bench twin`` that pair was two fifths of EventBus's time).
Each side parses the other's batch item by item: a bad item is refused (and counted) alone.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from schemas import topics, twin
from schemas.fields import STRICT, BodyError, shape

T = TypeVar("T")

# The types below are made once per device request or answer, several per update, and never changed after. They
# are not frozen dataclasses: those set each field through ``object.__setattr__``, three times the time of a plain
# slotted one (0.47 against 0.14 us for four fields).

MEMBERSHIP_GET = "membership/get"
"""The one request about the node rather than a device (its namespace and name are empty)."""


@dataclass(slots=True)  # not frozen: see above
class DeviceRequest:
    namespace: str
    name: str
    request: str
    """One of topics.DEVICE_REQUESTS, or MEMBERSHIP_GET."""
    payload: bytes
    """The device's JSON, as it sent it: DeviceTwin parses it (schemas/twin.py) and answers a bad one."""

    def to_wire(self) -> list[Any]:
        return [self.namespace, self.name, self.request, self.payload]

    @classmethod
    def parse(cls, item: Any, where: str = "body.requests[]") -> DeviceRequest:
        if not (isinstance(item, list) and len(item) == 4):
            raise BodyError(where, f"must be [namespace, name, request, payload], not {shape(item)}")
        namespace, name, request, payload = item
        if not isinstance(request, str):
            raise BodyError(f"{where}.request", f"must be a string, not {shape(request)}")
        if not isinstance(payload, bytes):
            raise BodyError(f"{where}.payload", f"must be bytes, not {shape(payload)}")
        if not isinstance(namespace, str) or not isinstance(name, str):
            raise BodyError(where, "must name the device's namespace and name with strings")
        if request == MEMBERSHIP_GET:
            return cls(namespace, name, request, payload)
        if request not in topics.DEVICE_REQUESTS:
            raise BodyError(f"{where}.request", f"is {request[:40]!r}, not a device request")
        if not topics.is_device(namespace, name):
            raise BodyError(where, f"names {namespace[:64]}/{name[:64]}, not a device's namespace and name")
        return cls(namespace, name, request, payload)


def requests_body(requests: list[DeviceRequest]) -> dict[str, Any]:
    return {"requests": [r.to_wire() for r in requests]}


def parse_requests(body: Any) -> list[DeviceRequest | BodyError]:
    """Each request of a batch, or why it is refused; BodyError when the body is no batch at all."""
    return _batch(body, "requests", DeviceRequest.parse)


@dataclass(slots=True)  # not frozen: see above
class Publication:
    """One answer of DeviceTwin's for a device topic, as DeviceTwin makes it."""

    topic: str
    payload: dict[str, Any] | None
    """None clears a retained message."""
    qos: int = 1
    retain: bool = False
    floats: bool = True
    """False: the payload holds no float (only strings, integers, booleans and None, as DeviceTwin's answers to an
    update), so its JSON is written without the check for floats that json would write otherwise."""

    def encoded(self) -> EncodedPublication:
        """The answer with its JSON written as KubeEdge's edge writes it (schemas/twin.py's ``dumps``); raises
        TypeError, ValueError or RecursionError when the payload cannot be JSON."""
        payload = b"" if self.payload is None else twin.dumps(self.payload, floats=self.floats)
        return EncodedPublication(self.topic, payload, self.qos, self.retain)


@dataclass(slots=True)  # not frozen: see above
class EncodedPublication:
    """One answer on its way from DeviceTwin to EventBus: the bytes to publish on a device topic."""

    topic: str
    payload: bytes
    """JSON; empty clears a retained message (no JSON text is empty)."""
    qos: int = 1
    retain: bool = False

    def to_wire(self) -> list[Any]:
        return [self.topic, self.payload, self.qos, self.retain]

    @classmethod
    def parse(cls, item: Any, where: str = "body.publish[]") -> EncodedPublication:
        """A topic under ``$hw/events/`` only (EventBus is the door for devices, not a way onto the node's own
        topics), with no wildcard and within MQTT's length; bytes; a QoS and a retain flag paho takes."""
        if not (isinstance(item, list) and len(item) == 4):
            raise BodyError(where, f"must be [topic, JSON bytes, qos, retain], not {shape(item)}")
        topic, payload, qos, retain = item
        if not (isinstance(topic, str) and _answer_topic(topic)):
            raise BodyError(f"{where}.topic", f"must be a device topic under {topics.HW_EVENTS}/")
        if not isinstance(payload, bytes):
            raise BodyError(f"{where}.payload", f"must be bytes (JSON, or empty to clear), not {shape(payload)}")
        if type(qos) is not int or qos not in (0, 1, 2):
            raise BodyError(f"{where}.qos", "must be 0, 1 or 2")
        if not isinstance(retain, bool):
            raise BodyError(f"{where}.retain", f"must be a boolean, not {shape(retain)}")
        return cls(topic, payload, qos, retain)


_ANSWER_PREFIX = topics.HW_EVENTS + "/"
_SHORT_TOPIC = 65535 // 4
"""Characters that fit MQTT's 65,535 bytes whatever they are (UTF-8 takes at most four bytes for one)."""


def _answer_topic(topic: str) -> bool:
    return topic.startswith(_ANSWER_PREFIX) and "+" not in topic and "#" not in topic and "\0" not in topic and \
        (len(topic) <= _SHORT_TOPIC or len(topic.encode(errors="replace")) <= 65535)


def publish_body(publications: list[EncodedPublication]) -> dict[str, Any]:
    return {"publish": [p.to_wire() for p in publications]}


def parse_publications(body: Any) -> list[EncodedPublication | BodyError]:
    """Each answer of a batch, or why it cannot be published; BodyError when the body is no batch at all."""
    return _batch(body, "publish", EncodedPublication.parse)


def _batch(body: Any, name: str, parse: Callable[[Any, str], T]) -> list[T | BodyError]:
    items = STRICT.body(body).get(name)
    if not isinstance(items, list):
        raise BodyError(f"body.{name}", f"must be a list, not {shape(items)}")
    out: list[T | BodyError] = []
    for index, item in enumerate(items):
        try:
            out.append(parse(item, f"body.{name}[{index}]"))
        except BodyError as exc:
            out.append(exc)
    return out
