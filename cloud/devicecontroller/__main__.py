"""``python -m cloud.devicecontroller``: KubeEdge Devices to edge nodes, and their status back."""

from cloud.devicecontroller.controller import MODULE, DeviceController, DeviceControllerSettings
from cloud.replicas.elected import run_elected

raise SystemExit(run_elected(MODULE, DeviceControllerSettings, DeviceController,
                              description="Send Devices and DeviceModels to their nodes; write what devices report."))
