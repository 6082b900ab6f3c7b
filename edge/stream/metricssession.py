"""One metrics stream at the node: a reading of the node and its pods, sent up as one answer.

The answer is small (a few hundred bytes a container) and made at once; it is still sent in data frames
within the cloud's credit, like a log, so that the stream tunnel has one way of moving bytes.
"""

from __future__ import annotations

import logging
from pathlib import Path

from edge.stream import resourcemetrics, statssummary
from edge.stream.metricssnapshot import Rates, take
from edge.stream.podmanapi import PodmanApi
from edge.stream.streamsession import Publish, StreamSession
from runtime.streamflow import SendWindow, StreamEnded
from schemas.metricsrequest import MetricsKind, MetricsRequest

log = logging.getLogger(__name__)


class MetricsSession(StreamSession):
    def __init__(self, api: PodmanApi, node: str, sid: str, request: MetricsRequest, window: SendWindow,
                 publish: Publish, rates: Rates, proc: Path = Path("/proc")) -> None:
        super().__init__(api, node, sid, window, publish)
        self.request = request
        self.rates = rates
        self.proc = proc

    def body(self) -> bytes:
        snapshot = take(self.api, self.node, self.proc)
        if self.request.kind == MetricsKind.RESOURCE:
            return resourcemetrics.render(snapshot)
        return statssummary.render(snapshot, self.node, self.rates)

    def run(self) -> None:
        try:
            self.send(self.body())
            self.close("end of metrics")
        except StreamEnded as ended:
            self.failed(ended)
