"""Times as the Kubernetes API writes them: RFC 3339 in UTC, whole seconds, a ``Z`` suffix.

One spelling for every timestamp edgehive puts in an object (pod and node status, conditions, a device's
last-online time) or in a log line, so that none can drift into a local zone or another precision; a Lease's
times are metav1.MicroTime, the same with microseconds. One reader for the times the API gives back.
"""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime
from typing import Any

_TIME = re.compile(r"^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.(\d+))?Z$")


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


def micro_time(seconds: float) -> str:
    """A metav1.MicroTime, as Leases carry their times: ``2026-01-01T00:00:00.123456Z``."""
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_rfc3339(text: Any) -> float | None:
    """Seconds since the epoch of an API time in UTC (metav1.Time, or MicroTime with its fraction: digits past
    the microsecond are dropped); None when ``text`` is not one."""
    match = _TIME.match(text) if isinstance(text, str) else None
    if match is None:
        return None
    try:
        whole = datetime.strptime(match.group(1), "%Y-%m-%dT%H:%M:%S")
    except ValueError:  # the right shape, but no such date (month 13)
        return None
    micros = int((match.group(2) or "")[:6].ljust(6, "0"))
    return whole.replace(tzinfo=UTC, microsecond=micros).timestamp()
