"""``python -m cloud.edgecontroller``: Kubernetes objects to edge nodes, and their status back."""

from cloud.edgecontroller.controller import MODULE, EdgeController, EdgeControllerSettings
from cloud.replicas.elected import run_elected

raise SystemExit(run_elected(MODULE, EdgeControllerSettings, EdgeController,
                              description="Send edge nodes their pods, ConfigMaps and Secrets; write their status."))
