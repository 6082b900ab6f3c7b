"""``python -m edgehive.bench.twinecho``: ``bench twin``'s baseline, an echo of device updates in a process of its
own. It answers each ``twin/update`` (under ``--prefix``) as EventBus does for DeviceTwin (a result and a document
at QoS 1, of the size DeviceTwin writes for five changed properties), or with ``--result-only`` as the echo of
earlier runs did (an empty result at QoS 0), doing nothing else. It writes its answers as the bus writes a
handler's (``Connection.corked``, here what came in since the last wake) through a window of EventBus's size: an
echo writing message by message would be held back by exactly the costs the bus no longer pays, and flatter the
ratio. It prints ``ready`` once subscribed and stops when its stdin closes.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import threading

from edge.eventbus.door import ANSWER_WINDOW
from runtime.connection import Connection, ConnectionSettings, Incoming
from runtime.url import BrokerUrl

PROPERTIES = 5
DEVICE_PREFIX = "$hw/events/device"
"""Where devices publish (KubeEdge's topics). ``--prefix`` moves the echo elsewhere, out of EventBus's way, so that
it can answer while the edge components run."""
RESULT_ONLY = (b'{"event_id":"","timestamp":0,"twin":{}}', 0)
"""What the echo of earlier runs answered: an empty result, at QoS 0."""


def answers_as_eventbus(topic: str) -> list[tuple[str, bytes, int]]:
    """For an update on ``topic``: a result and a document of the shape and size DeviceTwin writes for five
    changed float properties, each at QoS 1, as EventBus publishes them."""
    result, document = _eventbus_payloads()
    return [(topic + "/result", result, 1), (topic + "/document", document, 1)]


@functools.cache
def _eventbus_payloads() -> tuple[bytes, bytes]:
    """Written once: the echo is to cost the broker's work, not JSON encoding per update."""
    entry = {"actual": {"value": "12.5", "metadata": {"timestamp": 1764900000000}}, "optional": True,
             "metadata": {"type": "float"}}
    props = {f"p{j}": entry for j in range(PROPERTIES)}
    result = json.dumps({"event_id": "u1", "timestamp": 1764900000000, "twin": props},
                        separators=(",", ":")).encode()
    document = json.dumps({"event_id": "u1", "timestamp": 1764900000000,
                           "twin": {k: {"last": v, "current": v} for k, v in props.items()}},
                          separators=(",", ":")).encode()
    return result, document


class Echo:
    """Answers every update on the broker at ``url``; the answers go from a thread of their own, as EventBus's."""

    def __init__(self, url: BrokerUrl, namespace: str, *, like_eventbus: bool = True,
                 prefix: str = DEVICE_PREFIX) -> None:
        self.like_eventbus = like_eventbus
        self.connection = Connection(ConnectionSettings(url=url, client_id="bench-twin-echo", window=ANSWER_WINDOW),
                                     name="bench-twin-echo")
        self.subscribed = threading.Event()
        self.connection.on_subscribed(lambda _filter: self.subscribed.set())
        self.connection.subscribe(f"{prefix}/{namespace}/+/twin/update")
        self._pending: list[str] = []
        self._cond = threading.Condition()
        self._stop = False
        self.connection.on_message(self._on_update)
        threading.Thread(target=self._reply_loop, daemon=True).start()
        self.connection.start()

    def _on_update(self, incoming: Incoming) -> None:
        incoming.ack()
        with self._cond:
            self._pending.append(incoming.topic)
            self._cond.notify()

    def _reply_loop(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._pending or self._stop)
                if self._stop:
                    return
                batch, self._pending = self._pending, []
            with self.connection.corked():  # written together, as the bus writes a handler's answers
                for update_topic in batch:
                    if self.like_eventbus:
                        for topic, payload, qos in answers_as_eventbus(update_topic):
                            self.connection.publish(topic, payload, qos=qos)
                    else:
                        self.connection.publish(update_topic + "/result", RESULT_ONLY[0], qos=RESULT_ONLY[1])

    def close(self) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify()
        self.connection.close(drain_timeout=1)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m edgehive.bench.twinecho")
    parser.add_argument("--url", type=BrokerUrl.parse, required=True, help="the edge broker")
    parser.add_argument("--namespace", required=True, help="the devices' namespace")
    parser.add_argument("--result-only", action="store_true", help="answer an empty result at QoS 0 only")
    parser.add_argument("--prefix", default=DEVICE_PREFIX, help="the devices' topics begin with this")
    args = parser.parse_args()
    echo = Echo(args.url, args.namespace, like_eventbus=not args.result_only, prefix=args.prefix)
    try:
        if not (echo.connection.wait_connected(20) and echo.subscribed.wait(20)):
            print("the echo client could not connect and subscribe", file=sys.stderr)
            return 1
        print("ready", flush=True)
        sys.stdin.read()  # until the bench closes our stdin (or dies: then the kernel ends us, PDEATHSIG)
    finally:
        echo.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
