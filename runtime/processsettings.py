"""The settings every edgehive process has (log level and format), and those of a process that serves metrics.

Apart from runtime.component, which brings the bus (paho, msgpack, the envelope codec): the embedded broker's
settings extend ``MetricsSettings``, and the broker's process needs none of the bus (issue 19).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from runtime import metrics


@dataclass(frozen=True)
class ProcessSettings:
    """Settings every edgehive process has."""

    log_level: str = field(default="info", metadata={"help": "debug, info, warning or error"})
    log_format: str = field(default="text", metadata={"help": "text or json"})


@dataclass(frozen=True)
class MetricsSettings(ProcessSettings):
    """Settings of a process that can serve Prometheus metrics: components, the bridge, the brokers."""

    metrics_listen: str | None = field(default=None, metadata={
        "help": "HOST:PORT to serve Prometheus metrics on (/metrics); off by default"})

    def __post_init__(self) -> None:
        if self.metrics_listen is not None:
            metrics.parse_listen(self.metrics_listen)
