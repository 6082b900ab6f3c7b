"""``python -m cloud.joinserver``: the HTTPS endpoint edge nodes join through (port 10002, as KubeEdge's)."""

from __future__ import annotations

import logging
import sys

from cloud.clusterpki import ClusterPki
from cloud.joinserver.server import JoinServer, JoinServerSettings
from cloud.kube import Kube, KubeError
from runtime import logs, settings
from runtime.address import Address
from runtime.component import StopSignal
from runtime.healthfile import HealthFile

log = logging.getLogger("cloud.joinserver")


def main() -> int:
    s = settings.parse(JoinServerSettings, None, prog="python -m cloud.joinserver",
                       description="Edge nodes trade a join token and a CSR for their certificate here.")
    logs.setup("joinserver", s.log_level, s.log_format)
    stop = StopSignal().install()
    try:
        address = Address.parse(s.listen)
        pki = ClusterPki(Kube.connect(s.kubeconfig, s.kube_server))
        unnamed = pki.unnamed_members(s.cloud_broker)
        if unnamed:
            # A node told of a member its certificate does not name fails there, after its own member died.
            print(f"joinserver: --cloud-broker {s.cloud_broker}: the brokers' certificate does not name "
                  f"{', '.join(unnamed)}; add them with edgehive init --broker-name (or --cloud-broker with every "
                  "member) and restart the brokers", file=sys.stderr)
            return 2
        server = JoinServer((address.host, address.port), pki, s.cloud_broker, s.down_qos)
    except KubeError as exc:
        print(f"joinserver: {exc}", file=sys.stderr)
        return 1
    server.serve_in_thread()
    health = HealthFile.from_env("joinserver")
    health.set("up")
    log.info("joinserver listening on https://%s, telling nodes to use %s", s.listen, s.cloud_broker)
    log.info("joinserver: %s received, stopping", stop.wait())
    server.shutdown()
    health.close()
    return 0


raise SystemExit(main())
