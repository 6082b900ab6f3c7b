"""``python -m cloud.metricsapi``: the metrics API for kubectl top of edge nodes and pods."""

from cloud.metricsapi.component import MODULE, MetricsApi, MetricsApiSettings
from runtime.component import run_component
from schemas.topics import Side

raise SystemExit(run_component(MODULE, Side.CLOUD, MetricsApiSettings, MetricsApi,
                               description="Serve metrics.k8s.io (kubectl top) for edge nodes and their pods."))
