"""``python -m cloud.edgecontroller``: Kubernetes objects to edge nodes, and their status back."""

from cloud.edgecontroller.controller import MODULE, EdgeController, EdgeControllerSettings
from runtime.component import run_component
from schemas.topics import Side

raise SystemExit(run_component(MODULE, Side.CLOUD, EdgeControllerSettings, EdgeController,
                               description="Send edge nodes their pods, ConfigMaps and Secrets; write their status."))
