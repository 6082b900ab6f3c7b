"""The ``bridge`` command, shared by ``python -m broker.bridge`` and ``edgehive bridge``.

Apart from broker/cli.py so that the bridge's process loads only what the bridge runs on (paho, through
runtime.connection), not the embedded broker the ``broker`` command starts: amqtt with asyncio, websockets,
dacite and transitions are more than a quarter of a bridge's import-time memory when it is started on its own.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any

from broker import metrics
from broker.bridge import Bridge, BridgeSettings
from broker.bridgesettings import BridgeProcessSettings
from runtime import logs, settings
from runtime.component import StopSignal
from runtime.connection import TlsSettings
from runtime.healthfile import HealthFile
from runtime.metrics import serve as serve_metrics
from runtime.url import BrokerUrl

log = logging.getLogger(__name__)


def to_bridge(s: BridgeProcessSettings) -> BridgeSettings:
    cloud = s.cloud_urls()
    return BridgeSettings(
        node=s.node, cloud=cloud[0], cloud_alternates=cloud[1:], edge=BrokerUrl.parse(s.edge),
        cloud_tls=s.cloud_tls(), edge_tls=TlsSettings(s.edge_ca), window=s.window, down_qos=s.down_qos,
    )


def add_bridge_arguments(parser: argparse.ArgumentParser) -> None:
    settings.add_arguments(parser, BridgeProcessSettings)


def bridge_main(args: argparse.Namespace) -> int:
    s = settings.load(BridgeProcessSettings, args)
    logs.setup("bridge", s.log_level, s.log_format)
    try:
        bridge_settings = to_bridge(s)
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
