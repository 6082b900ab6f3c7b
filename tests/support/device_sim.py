"""Devices on an edge node: each says it is online, then publishes temperature readings in KubeEdge's twin JSON.

Run on the node's host (``python -m tests.support.device_sim``), against the node's
broker on loopback, as real devices beside the node would. Readings are spread evenly
over ``--seconds``; reading ``k`` of a device has the value ``value(k)``, so a test knows
every device's last value without asking the simulator. Each publish waits for the
broker's PUBACK, and is sent again across a broker restart as a device's client would:
a reading the simulator counted was accepted by the node.
"""

from __future__ import annotations

import argparse
import json
import time

from tests.fixtures.mqtt import TestClient


def value(k: int) -> str:
    """The k-th reading of a device: varies, stays inside the model's -40..125 range."""
    return f"{(k * 7919) % 12000 / 100:.2f}"


def last_values(devices: list[str], readings: int, first: int = 0) -> dict[str, str]:
    """Each device's last value when ``readings`` are shared round-robin between ``devices``, numbered from
    ``first`` (so that successive runs end on different values)."""
    counts = {d: readings // len(devices) + (1 if i < readings % len(devices) else 0) for i, d in enumerate(devices)}
    return {d: value(first + n - 1) for d, n in counts.items() if n}


def twin_update(k: int) -> bytes:
    reading = {"actual": {"value": value(k)}, "metadata": {"type": "float"}}
    return json.dumps({"event_id": f"r{k}", "timestamp": int(time.time() * 1000),
                       "twin": {"temperature": reading}}).encode()


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.support.device_sim")
    parser.add_argument("--port", type=int, required=True, help="the node's broker on 127.0.0.1")
    parser.add_argument("--namespace", required=True)
    parser.add_argument("--devices", required=True, help="device names, comma-separated")
    parser.add_argument("--readings", type=int, required=True, help="readings in all, shared round-robin")
    parser.add_argument("--seconds", type=float, required=True, help="spread over this long")
    parser.add_argument("--first", type=int, default=0, help="number of each device's first reading")
    args = parser.parse_args()
    names = args.devices.split(",")
    base = f"$hw/events/device/{args.namespace}"
    sent = dict.fromkeys(names, args.first)
    with TestClient("127.0.0.1", args.port, client_id=f"sim-{args.namespace}-{names[0]}", timeout=30) as client:
        for name in names:
            client.publish_until_acked(f"{base}/{name}/state/update", json.dumps({"state": "online"}).encode(), 120)
        start = time.monotonic()
        for i in range(args.readings):
            name = names[i % len(names)]
            client.publish_until_acked(f"{base}/{name}/twin/update", twin_update(sent[name]), 120)
            sent[name] += 1
            if i % 500 == 0:
                print(f"{i} readings sent", flush=True)
            pause = start + (i + 1) * args.seconds / args.readings - time.monotonic()
            if pause > 0:
                time.sleep(pause)  # pacing the stream, not waiting for anything
    print(json.dumps({"sent": sent, "seconds": round(time.monotonic() - start, 1)}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
