"""``python -m cloud.admission``: the mutating admission webhook that keeps edge pods through offline spells."""

from cloud.admission.webhook import MODULE, AdmissionSettings, AdmissionWebhook
from runtime.component import run_component
from schemas.topics import Side

raise SystemExit(run_component(MODULE, Side.CLOUD, AdmissionSettings, AdmissionWebhook,
                               description="Serve the webhook that gives edge-only pods forever offline tolerations."))
