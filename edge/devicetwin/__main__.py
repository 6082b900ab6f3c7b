"""``python -m edge.devicetwin``: this node's device twins."""

from edge.devicetwin.component import MODULE, DeviceTwinComponent, DeviceTwinSettings
from runtime.component import run_component
from schemas.topics import Side

raise SystemExit(run_component(MODULE, Side.EDGE, DeviceTwinSettings, DeviceTwinComponent,
                               description="Keep this node's device twins and answer its devices."))
