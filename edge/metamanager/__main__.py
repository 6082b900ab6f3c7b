"""``python -m edge.metamanager``: the node's store of everything the cloud sent."""

from edge.metamanager.component import MetaManagerComponent, MetaManagerSettings
from edge.metamanager.manager import MODULE
from runtime.component import run_component
from schemas.topics import Side

raise SystemExit(run_component(MODULE, Side.EDGE, MetaManagerSettings, MetaManagerComponent,
                               description="Store what the cloud sends this node, and answer queries."))
