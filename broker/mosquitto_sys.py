"""mosquitto's own figures, read from its $SYS topics for Prometheus.

mosquitto publishes its counters on ``$SYS/broker/...`` every few seconds, to clients
that may read them. Our wrapper gives it one more listener for that: a Unix socket in
its private directory, anonymous, whose ACL allows reading ``$SYS/#`` and nothing
else, so no network client and no node identity is involved.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

log = logging.getLogger(__name__)

SYS_TOPICS = {
    "$SYS/broker/clients/connected": "clients_connected",
    "$SYS/broker/clients/total": "sessions",
    "$SYS/broker/retained messages/count": "retained",
    "$SYS/broker/store/messages/count": "stored",
    "$SYS/broker/publish/messages/received": "messages_received",
    "$SYS/broker/publish/messages/sent": "messages_sent",
    "$SYS/broker/publish/messages/dropped": "publish_dropped",
}
class SysReader:
    """Keeps the latest value of each $SYS figure; reconnects when mosquitto restarts."""

    def __init__(self, socket_path: Path) -> None:
        self.socket_path = socket_path
        self._values: dict[str, float] = {}
        self._lock = threading.Lock()
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="edgehive-metrics",
                                   transport="unix")
        self._client.reconnect_delay_set(1, 2)
        self._client.on_connect = self._on_connect
        self._client.on_message = self._on_message

    def start(self) -> SysReader:
        # connect_async: mosquitto may not have made its socket yet; paho's loop retries.
        self._client.connect_async(str(self.socket_path))
        self._client.loop_start()
        return self

    def stop(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    def stats(self) -> dict[str, float]:
        with self._lock:
            return dict(self._values)

    def _on_connect(self, client: mqtt.Client, _userdata: Any, _flags: Any, reason: Any, _props: Any) -> None:
        if reason.is_failure:
            log.warning("mosquitto's $SYS socket %s refused us: %s", self.socket_path, reason)
            return
        client.subscribe([(topic, 0) for topic in SYS_TOPICS])

    def _on_message(self, _client: mqtt.Client, _userdata: Any, message: mqtt.MQTTMessage) -> None:
        key = SYS_TOPICS.get(message.topic)
        try:
            value = float(message.payload.split()[0])
        except (ValueError, IndexError):
            return
        if key is not None:
            with self._lock:
                self._values[key] = value
