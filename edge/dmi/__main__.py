"""``python -m edge.dmi``: KubeEdge's device management interface (DMI) for this node's mappers."""

from edge.dmi.component import MODULE, DmiComponent, DmiSettings
from runtime.component import run_component
from schemas.topics import Side

raise SystemExit(run_component(MODULE, Side.EDGE, DmiSettings, DmiComponent,
                               description="Serve DeviceManagerService to this node's mappers over gRPC."))
