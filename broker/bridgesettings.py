"""The Python bridge's settings (``edgehive bridge``, edge.yaml), apart from the bridge: without paho.

Both links read them: the Python bridge (broker/bridgecli.py) and the edge mosquitto's own bridge
(``--bridge native``, broker/nativebridge.py), whose sections the stack writes from a joined node's edge.yaml
in a process that has no use for paho.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from runtime import settings
from runtime.connsettings import TlsSettings
from runtime.processsettings import MetricsSettings
from runtime.qos import check_qos
from runtime.url import BrokerUrl


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

    def cloud_urls(self) -> tuple[BrokerUrl, ...]:
        """The cloud broker, or its members (a NATS cluster)."""
        if not self.node or not self.cloud:
            raise settings.SettingsError("the bridge needs --node and --cloud")
        return BrokerUrl.parse_list(self.cloud)

    def cloud_tls(self) -> TlsSettings:
        return TlsSettings(self.cloud_ca, self.cloud_cert, self.cloud_key)
