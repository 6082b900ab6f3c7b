"""The MQTT QoS levels edgehive speaks, and the one check of a QoS setting that every layer above uses.

0 and 1 only: NATS, the clustered cloud broker, has no QoS 2, and nothing here needs it (what must not be lost
is acknowledged end to end and sent again by its sender, not by the broker)."""

from __future__ import annotations


def check_qos(name: str, value: object) -> int:
    """``value`` as a QoS; ValueError naming the setting ``name`` unless it is the int 0 or 1."""
    if type(value) is not int or value not in (0, 1):
        raise ValueError(f"{name} must be 0 or 1, not {value!r}")
    return value
