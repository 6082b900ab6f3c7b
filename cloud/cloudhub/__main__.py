"""``python -m cloud.cloudhub``: the cloud end of every edge node's link."""

from cloud.cloudhub.hub import CloudHub, CloudHubSettings
from cloud.cloudhub.routing import MODULE, error_route
from runtime.component import run_component
from schemas.topics import Side

raise SystemExit(run_component(MODULE, Side.CLOUD, CloudHubSettings, CloudHub, error_route=error_route,
                               description="Reliable per-node delivery to edge nodes, and routing of what they send."))
