"""A property's ``pushMethod`` (DMI's ``PushMethod``): where a mapper sends each value it collects, besides the edge.

KubeEdge's mapper framework (``data/publish``) pushes every collected value of a property that has a
pushMethod, at the property's collectCycle, and this keeps its wire formats so that a consumer written for
it reads ours unchanged:

- ``mqtt``: a PUBLISH to ``address`` on ``topic`` with ``qos`` and ``retained``, payload
  ``time is 2006-01-02 15:04:05  <topic>: <value>`` (the reading's time, local, to the second);
- ``http``: a POST to ``hostName:port`` + ``requestPath``, ``application/x-www-form-urlencoded``, body
  ``<property>=<value>&time=2006-01-02 15:04:05`` (sent as is, unescaped, as the framework sends it).

What a mapper here cannot do is refused by field (``PushRefused``), never accepted and ignored: ``otel``,
every ``dbMethod`` (influxdb2, redis, tdengine, mysql), ``anomalyDetection``, and both ``http`` and ``mqtt``
at once (the framework takes one of them). Where the framework leaves a setting unused or open, the choice
made here: an MQTT ``address`` may be ``tcp://`` or ``mqtt://`` (plain) or ``ssl://``, ``tls://``, ``mqtts://``
(TLS, the system's CAs), with ``user:password@`` if the broker wants them; an HTTP ``timeout`` is in
milliseconds (the unit of every other duration of a device), 5 s when 0.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

from edge.errors import EdgeError
from runtime.url import BrokerUrl
from schemas.dmi.v1beta1 import api_pb2 as pb

MQTT_SCHEMES = {"tcp": "mqtt", "mqtt": "mqtt", "ssl": "mqtts", "tls": "mqtts", "mqtts": "mqtts"}
DEFAULT_HTTP_TIMEOUT_MS = 5000
DB_METHODS: tuple[Literal["influxdb2", "redis", "tdengine", "mysql"], ...] = ("influxdb2", "redis", "tdengine", "mysql")


class PushRefused(EdgeError, ValueError):
    """A pushMethod this mapper cannot honour; the message names the field."""


@dataclass(frozen=True)
class MqttPush:
    url: BrokerUrl
    topic: str
    qos: int
    retained: bool

    def payload(self, value: str, timestamp_ms: int) -> bytes:
        return f"time is {_clock(timestamp_ms)}  {self.topic}: {value}".encode()


@dataclass(frozen=True)
class HttpPush:
    url: str
    """``hostName:port`` + ``requestPath``."""
    timeout_s: float

    @staticmethod
    def payload(prop: str, value: str, timestamp_ms: int) -> bytes:
        return f"{prop}={value}&time={_clock(timestamp_ms)}".encode()


PushTarget = MqttPush | HttpPush


def _clock(timestamp_ms: int) -> str:
    """Go's ``time.Unix(ms/1e3, 0).Format("2006-01-02 15:04:05")``: local time, to the second."""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(timestamp_ms // 1000))


def parse_push(method: pb.PushMethod, where: str) -> PushTarget | None:
    """The target of ``method`` (None: nothing to push), or PushRefused naming the first field it cannot honour."""
    if method.HasField("otel"):
        raise PushRefused(f"{where}.otel: OpenTelemetry export is not done by this mapper (it pushes by mqtt or "
                          f"http)")
    if method.HasField("dbMethod"):
        named = next((name for name in DB_METHODS if method.dbMethod.HasField(name)), "")
        field = f"{where}.dbMethod" + (f".{named}" if named else "")
        raise PushRefused(f"{field}: writing to a database is not done by this mapper (it pushes by mqtt or http)")
    if method.HasField("anomalyDetection"):
        raise PushRefused(f"{where}.anomalyDetection: not done by this mapper")
    if method.HasField("mqtt") and method.HasField("http"):
        raise PushRefused(f"{where}: gives both http and mqtt; give one (KubeEdge's mapper pushes by one)")
    if method.HasField("mqtt"):
        return _mqtt(method.mqtt, f"{where}.mqtt")
    if method.HasField("http"):
        return _http(method.http, f"{where}.http")
    return None


def _mqtt(mqtt: pb.PushMethodMQTT, where: str) -> MqttPush:
    scheme, sep, rest = mqtt.address.partition("://")
    if not sep or scheme.lower() not in MQTT_SCHEMES:
        raise PushRefused(f"{where}.address: {mqtt.address[:80]!r} must be a broker address such as "
                          f"tcp://HOST:1883 ({', '.join(s + '://' for s in MQTT_SCHEMES)})")
    try:
        url = BrokerUrl.parse(f"{MQTT_SCHEMES[scheme.lower()]}://{rest}")
    except ValueError as exc:
        raise PushRefused(f"{where}.address: {exc}") from None
    if not mqtt.topic:
        raise PushRefused(f"{where}.topic: is missing")
    if any(c in mqtt.topic for c in "+#\0"):
        raise PushRefused(f"{where}.topic: {mqtt.topic[:80]!r} is a filter or holds NUL; a publish needs a topic")
    if mqtt.qos not in (0, 1, 2):
        raise PushRefused(f"{where}.qos: {mqtt.qos} is not 0, 1 or 2")
    return MqttPush(url, mqtt.topic, mqtt.qos, mqtt.retained)


def _http(http: pb.PushMethodHTTP, where: str) -> HttpPush:
    parts = urlsplit(http.hostname)
    try:
        port = parts.port
    except ValueError:
        port = -1
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.path or port is not None:
        raise PushRefused(f"{where}.hostName: {http.hostname[:80]!r} must be http://HOST or https://HOST (the port "
                          f"and path go in port and requestPath)")
    if not 0 < http.port < 65536:
        raise PushRefused(f"{where}.port: {http.port} is not a TCP port")
    if http.requestpath and not http.requestpath.startswith("/"):
        raise PushRefused(f"{where}.requestPath: {http.requestpath[:80]!r} must start with /")
    if http.timeout < 0:
        raise PushRefused(f"{where}.timeout: {http.timeout} ms is negative")
    return HttpPush(f"{http.hostname}:{http.port}{http.requestpath}",
                    (http.timeout or DEFAULT_HTTP_TIMEOUT_MS) / 1000)
