"""``python -m edge.edgehub``: the edge end of the cloud link, with the durable outbox."""

from edge.edgehub.hub import EdgeHub, EdgeHubSettings
from edge.edgehub.routing import MODULE
from runtime.component import run_component
from schemas.topics import Side

raise SystemExit(run_component(MODULE, Side.EDGE, EdgeHubSettings, EdgeHub,
                               description="Route cloud traffic to the node's modules and send theirs up."))
