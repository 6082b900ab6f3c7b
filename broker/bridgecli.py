"""The ``bridge`` command, shared by ``python -m broker.bridge`` and ``edgehive bridge``.

Apart from broker/cli.py so that the bridge's process loads only what the bridge runs on (paho, through
runtime.connection), not the embedded broker the ``broker`` command starts: amqtt with asyncio, websockets,
dacite and transitions are more than a quarter of a bridge's import-time memory when it is started on its own.
"""

from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import dataclass, field
from typing import Any

from broker import metrics
from broker.bridge import Bridge, BridgeSettings, check_qos
from runtime import logs, settings
from runtime.component import StopSignal
from runtime.connection import TlsSettings
from runtime.healthfile import HealthFile
from runtime.metrics import serve as serve_metrics
from runtime.processsettings import MetricsSettings
from runtime.url import BrokerUrl

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BridgeProcessSettings(MetricsSettings):
    node: str = field(default="", metadata={"help": "the edge node this bridge serves (required)"})
    cloud: str = field(default="", metadata={
        "help": "cloud broker URL, mqtt[s]://user:pass@host:port, or a cluster's members as "
                "mqtt[s]://user:pass@host:port,host:port,... (required)"})
    edge: str = field(default="mqtt://127.0.0.1:1884", metadata={"help": "edge broker URL"})
    cloud_ca: str | None = field(default=None, metadata={"help": "CA file for an mqtts:// cloud broker"})
    cloud_cert: str | None = field(default=None, metadata={"help": "client certificate for the cloud broker"})
    cloud_key: str | None = field(default=None, metadata={"help": "client key for the cloud broker"})
    edge_ca: str | None = field(default=None, metadata={"help": "CA file for an mqtts:// edge broker"})
    window: int = field(default=100, metadata={"help": "most unacknowledged messages per direction"})
    down_qos: int = field(default=1, metadata={
        "help": "QoS of the subscription to the node's down topic on the cloud broker: 1 (the default) for "
                "mosquitto and amqtt, 0 for NATS, where each QoS 1 subscription is a replicated JetStream "
                "consumer; CloudHub resends every resource until the node answers it (edgehive join writes "
                "what the join endpoint says)"})

    def __post_init__(self) -> None:
        super().__post_init__()
        check_qos("down_qos", self.down_qos)

    def to_bridge(self) -> BridgeSettings:
        if not self.node or not self.cloud:
            raise settings.SettingsError("the bridge needs --node and --cloud")
        cloud = BrokerUrl.parse_list(self.cloud)
        return BridgeSettings(
            node=self.node, cloud=cloud[0], cloud_alternates=cloud[1:], edge=BrokerUrl.parse(self.edge),
            cloud_tls=TlsSettings(self.cloud_ca, self.cloud_cert, self.cloud_key),
            edge_tls=TlsSettings(self.edge_ca), window=self.window, down_qos=self.down_qos,
        )


def add_bridge_arguments(parser: argparse.ArgumentParser) -> None:
    settings.add_arguments(parser, BridgeProcessSettings)


def bridge_main(args: argparse.Namespace) -> int:
    s = settings.load(BridgeProcessSettings, args)
    logs.setup("bridge", s.log_level, s.log_format)
    try:
        bridge_settings = s.to_bridge()
    except ValueError as exc:
        print(f"edgehive bridge: {exc}", file=sys.stderr)
        return 2
    stop = StopSignal().install()
    bridge = Bridge(bridge_settings).start()
    if s.metrics_listen:
        serve_metrics(s.metrics_listen, metrics.BridgeCollector(bridge_settings.node, bridge.report))

    def probe() -> tuple[str, dict[str, Any]]:
        if bridge.cloud.connected and bridge.edge.connected:
            return "up", {}
        return "down", {"cloud": bridge.cloud.connected, "edge": bridge.edge.connected}

    health = HealthFile.from_env("bridge", probe)
    log.info("bridge: %s received, draining", stop.wait())
    bridge.stop()
    health.close()
    log.info("bridge stopped: %s", bridge.counters.snapshot())
    return 0
