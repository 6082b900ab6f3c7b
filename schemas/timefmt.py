"""Times as the Kubernetes API writes them: RFC 3339 in UTC, whole seconds, a ``Z`` suffix.

One spelling for every timestamp edgehive puts in an object (pod and node status, conditions, a device's
last-online time) or in a log line, so that none can drift into a local zone or another precision.
"""

from __future__ import annotations

import time


def rfc3339(seconds: float, *, millis: int | None = None) -> str:
    """``seconds`` since the epoch, e.g. ``2026-01-01T00:00:00Z``; with ``millis``, ``...00:00.123Z``.

    Fractions of ``seconds`` are dropped: the API's own times (metav1.Time) carry whole seconds. A log line
    gives its milliseconds apart, as the logging module computed them for the record.
    """
    whole = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
    return f"{whole}Z" if millis is None else f"{whole}.{millis:03d}Z"


def now_rfc3339() -> str:
    """The current time, as :func:`rfc3339` writes it."""
    return rfc3339(time.time())
