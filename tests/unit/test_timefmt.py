"""RFC 3339 times: UTC, whole seconds, 'Z', whatever the local zone; milliseconds only when given."""

from __future__ import annotations

import logging
import time

import pytest

from runtime.logs import JsonFormatter
from schemas.timefmt import micro_time, now_rfc3339, parse_rfc3339, rfc3339


def test_whole_seconds_in_utc() -> None:
    assert rfc3339(0) == "1970-01-01T00:00:00Z"
    assert rfc3339(1_767_225_600) == "2026-01-01T00:00:00Z"
    assert rfc3339(1_767_225_600.999) == "2026-01-01T00:00:00Z"  # the fraction is dropped, not rounded


def test_milliseconds_when_given() -> None:
    assert rfc3339(1_767_225_600.5, millis=500) == "2026-01-01T00:00:00.500Z"
    assert rfc3339(1_767_225_600, millis=7) == "2026-01-01T00:00:00.007Z"


def test_the_local_zone_changes_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "Asia/Kolkata")
    time.tzset()
    try:
        assert rfc3339(1_767_225_600) == "2026-01-01T00:00:00Z"
    finally:
        monkeypatch.undo()
        time.tzset()


def test_now_is_the_current_second() -> None:
    before = rfc3339(time.time())
    now = now_rfc3339()
    after = rfc3339(time.time())
    assert before <= now <= after
    assert len(now) == len("2026-01-01T00:00:00Z")


def test_a_json_log_line_carries_the_records_milliseconds() -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "hello", None, None)
    record.created, record.msecs = 1_767_225_600.25, 250.0
    assert '"ts": "2026-01-01T00:00:00.250Z"' in JsonFormatter("edged").format(record)


def test_micro_time_round_trips() -> None:
    now = 1_700_000_000.25
    text = micro_time(now)
    assert text == "2023-11-14T22:13:20.250000Z"
    assert parse_rfc3339(text) == now
    assert parse_rfc3339("2023-11-14T22:13:20Z") == 1_700_000_000.0
    assert parse_rfc3339("yesterday") is None
    assert parse_rfc3339(None) is None
