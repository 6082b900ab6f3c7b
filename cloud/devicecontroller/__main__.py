"""``python -m cloud.devicecontroller``: KubeEdge Devices to edge nodes, and their status back."""

from cloud.devicecontroller.controller import MODULE, DeviceController, DeviceControllerSettings
from runtime.component import run_component
from schemas.topics import Side

raise SystemExit(run_component(MODULE, Side.CLOUD, DeviceControllerSettings, DeviceController,
                               description="Send Devices and DeviceModels to their nodes; write what devices report."))
