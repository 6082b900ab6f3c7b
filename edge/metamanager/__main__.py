"""``python -m edge.metamanager``: the node's store of everything the cloud sent."""

from broker.runtime import run_component
from edge.metamanager.component import MetaManagerComponent, MetaManagerSettings
from edge.metamanager.manager import MODULE
from schemas.topics import Side

raise SystemExit(run_component(MODULE, Side.EDGE, MetaManagerSettings, MetaManagerComponent,
                               description="Store what the cloud sends this node, and answer queries."))
