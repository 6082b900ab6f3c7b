"""``python -m edge.stream``: the node's end of the stream tunnel (kubectl logs, exec, attach, cp, port-forward)."""

from edge.stream.component import MODULE, StreamEnd, StreamEndSettings
from runtime.component import run_component
from schemas.topics import Side

raise SystemExit(run_component(MODULE, Side.EDGE, StreamEndSettings, StreamEnd,
                               description="Serve the cloud's streams to this node (logs, exec, attach, "
                                           "port-forward) from podman."))
