"""Each Rule's status: successMessages, failMessages and the latest errors, written to the API server.

Counts start from what the Rule's status held when the router first saw it (a restarted router
goes on counting, as KubeEdge's read-increment-write does) and are written at most once per
``interval_s`` per Rule, with a merge patch of the status subresource: a busy rule costs one
write a second, not one per message. KubeEdge keeps only the last error; we keep the last
``MAX_ERRORS``, newest last, so that a dropped message's reason is not hidden by the next retry's.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from cloud.router.table import RuleId
from schemas.rules import RuleStatus

log = logging.getLogger(__name__)

MAX_ERRORS = 10
MAX_ERROR_CHARS = 500

Write = Callable[[RuleId, dict[str, Any]], None]
"""Patch one Rule's status (raises on failure: the status is written again at the next flush)."""


@dataclass
class _Entry:
    status: RuleStatus
    dirty: bool = False


class StatusBook:
    def __init__(self, write: Write) -> None:
        self._write = write
        self._lock = threading.Lock()
        self._entries: dict[RuleId, _Entry] = {}

    def seen(self, rule: RuleId, status: RuleStatus) -> None:
        """A Rule the informer has: its counts start from its status, once."""
        with self._lock:
            self._entries.setdefault(rule, _Entry(status))

    def forget(self, rule: RuleId) -> None:
        with self._lock:
            self._entries.pop(rule, None)

    def status(self, rule: RuleId) -> RuleStatus | None:
        with self._lock:
            entry = self._entries.get(rule)
            return None if entry is None else entry.status

    def success(self, rule: RuleId) -> None:
        with self._lock:
            entry = self._entries.get(rule)
            if entry is not None:
                entry.status = replace(entry.status, success=entry.status.success + 1)
                entry.dirty = True

    def fail(self, rule: RuleId, reason: str) -> None:
        self._error(rule, reason, count=True)

    def refused(self, rule: RuleId, reason: str) -> None:
        """The Rule itself cannot be carried: its reason in ``errors`` (once), no message counted."""
        self._error(rule, reason, count=False)

    def _error(self, rule: RuleId, reason: str, *, count: bool) -> None:
        reason = reason[:MAX_ERROR_CHARS]
        with self._lock:
            entry = self._entries.get(rule)
            if entry is None:
                return
            errors = entry.status.errors
            if not count and errors and errors[-1] == reason:
                return
            entry.status = RuleStatus(entry.status.success, entry.status.fail + (1 if count else 0),
                                      (*errors, reason)[-MAX_ERRORS:])
            entry.dirty = True

    def flush(self) -> int:
        """Write every changed status; returns how many were written."""
        with self._lock:
            due = [(rule, entry.status) for rule, entry in self._entries.items() if entry.dirty]
            for rule, _status in due:
                self._entries[rule].dirty = False
        written = 0
        for rule, status in due:
            try:
                self._write(rule, {"status": status.as_body()})
                written += 1
            except Exception as exc:  # the API server away or the Rule gone: try again at the next flush
                log.warning("status of Rule %s/%s not written yet: %s", rule[0], rule[1], exc)
                with self._lock:
                    entry = self._entries.get(rule)
                    if entry is not None:
                        entry.dirty = True
        return written
