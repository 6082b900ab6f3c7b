"""``python -m edge.eventbus``: KubeEdge's device topics on this node's broker."""

from edge.eventbus.door import MODULE, EventBus, EventBusSettings
from runtime.component import run_component
from schemas.topics import Side

raise SystemExit(run_component(MODULE, Side.EDGE, EventBusSettings, EventBus,
                               description="Turn device JSON into envelopes for DeviceTwin, and its answers back."))
