"""The root of the errors the MQTT brokers' package raises: a broker missing, a password file unreadable."""

from __future__ import annotations


class BrokerError(Exception):
    """Serving MQTT cannot go on as configured; the subclass says what is wrong."""
