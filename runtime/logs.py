"""Logging for every edgehive process: readable lines for people, JSON lines for collectors."""

from __future__ import annotations

import json
import logging
import sys
from typing import Any

from schemas.timefmt import rfc3339

QUIET_LIBRARIES = ("transitions", "amqtt", "kubernetes", "urllib3", "peewee")


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, component, logger, msg, and the exception if any."""

    def __init__(self, component: str) -> None:
        super().__init__()
        self.component = component

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": rfc3339(record.created, millis=int(record.msecs)),
            "level": record.levelname.lower(),
            "component": self.component,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def setup(component: str, level: str = "info", fmt: str = "text") -> None:
    """Configure the root logger once per process."""
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter(component))
    elif fmt == "text":
        handler.setFormatter(logging.Formatter(f"%(asctime)s %(levelname)-7s {component} %(name)s: %(message)s"))
    else:
        raise ValueError(f"log format {fmt!r} is not 'text' or 'json'")
    root = logging.getLogger()
    root.handlers[:] = [handler]
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        raise ValueError(f"log level {level!r} is not one of debug, info, warning, error")
    root.setLevel(numeric)
    for name in QUIET_LIBRARIES:
        logging.getLogger(name).setLevel(max(numeric, logging.WARNING))
