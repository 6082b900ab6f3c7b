"""``python -m cloud.stream``: the cloud stream server (kubectl logs, exec, attach, cp, port-forward of edge pods)."""

from cloud.stream.component import MODULE, StreamServer, StreamServerSettings
from runtime.component import run_component
from schemas.topics import Side

raise SystemExit(run_component(MODULE, Side.CLOUD, StreamServerSettings, StreamServer,
                               description="Serve the kubelet API of edge nodes through their links."))
