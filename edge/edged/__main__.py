"""``python -m edge.edged``: run this node's pods in podman."""

from edge.edged.component import MODULE, EdgeD, EdgeDSettings
from runtime.component import run_component
from schemas.topics import Side

raise SystemExit(run_component(MODULE, Side.EDGE, EdgeDSettings, EdgeD,
                               description="Run the node's pods as podman pods and report their status."))
