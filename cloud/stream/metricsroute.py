"""``GET /metrics/resource`` and ``GET /stats/summary`` of an edge node, fetched through its stream tunnel.

The node is the one the API server's node proxy names (schemas/metricsrequest.py: ``X-Forwarded-Uri``);
the node's stream end reads its own figures and its own pods' containers only, so whatever is asked, a
node never reports another node's pods. The answer is whole and small: it is gathered here and sent with
its length and the kubelet's content type, so that an error on the way is an HTTP error and not a
truncated document.
"""

from __future__ import annotations

from dataclasses import dataclass

from cloud.stream.tunnel import Tunnel
from runtime.streamflow import StreamEnded, StreamIdle
from schemas.metricsrequest import MAX_BODY, MetricsKind, MetricsRequest, proxied_node
from schemas.streamrequest import RequestRefused


@dataclass(frozen=True)
class MetricsAnswer:
    code: int  # 200, or the error code to answer with (``message`` then says why)
    body: bytes = b""
    message: str = ""


def fetch_metrics(tunnel: Tunnel, forwarded_uri: str | None, kind: MetricsKind, timeout_s: float) -> MetricsAnswer:
    try:
        node = proxied_node(forwarded_uri)
    except RequestRefused as exc:
        return MetricsAnswer(exc.code, message=str(exc))
    try:
        stream = tunnel.open(node, MetricsRequest(kind).as_map())
    except StreamEnded as exc:
        return MetricsAnswer(exc.code, message=exc.reason)
    try:
        if not stream.inbox.started.wait(timeout_s):
            return MetricsAnswer(504, message=f"node {node} did not answer within {timeout_s:g} s")
        body = bytearray()
        while True:
            try:
                chunk = stream.inbox.get(timeout_s)
            except StreamIdle:
                return MetricsAnswer(504, message=f"node {node} stopped answering for {timeout_s:g} s")
            except StreamEnded as end:
                if end.code != 200:
                    return MetricsAnswer(end.code, message=end.reason)
                return MetricsAnswer(200, bytes(body))
            body += chunk
            if len(body) > MAX_BODY:
                return MetricsAnswer(502, message=f"node {node}'s metrics are over {MAX_BODY} bytes")
            tunnel.grant(stream, len(chunk))
    finally:
        tunnel.finish(stream, "the metrics were read")
