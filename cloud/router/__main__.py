"""``python -m cloud.router``: KubeEdge's Rules between nodes' event buses and HTTP."""

from cloud.replicas.elected import run_elected
from cloud.router.component import MODULE, Router, RouterSettings

raise SystemExit(run_elected(MODULE, RouterSettings, Router,
                              description="Carry rules.kubeedge.io Rules: node uploads to REST, REST calls to nodes."))
