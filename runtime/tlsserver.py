"""What the HTTPS servers that require client certificates share: the handshake on the request's own thread,
and the client certificate's CN (the cloud stream server and the metrics API both authorize by it)."""

from __future__ import annotations

import http.server
import logging
import socket
import ssl
from typing import Any

log = logging.getLogger(__name__)

HANDSHAKE_TIMEOUT_S = 10.0


class HandshakingServer(http.server.ThreadingHTTPServer):
    """A threading HTTP server whose socket is wrapped with ``do_handshake_on_connect=False``: a slow or silent
    client then holds up its own thread only, never ``accept()``."""

    daemon_threads = True
    # socketserver's default backlog is 5: a burst of connections (the API server opening a hundred execs at
    # once) overflows it, the kernel drops SYNs, and clients wait out retransmits or time out.
    request_queue_size = 128

    def finish_request(self, request: Any, client_address: Any) -> None:
        assert isinstance(request, ssl.SSLSocket)
        try:
            request.settimeout(HANDSHAKE_TIMEOUT_S)
            request.do_handshake()
            request.settimeout(None)
        except (OSError, ssl.SSLError) as exc:
            log.info("TLS handshake with %s failed: %s", client_address[0], exc)
            return
        super().finish_request(request, client_address)


def peer_common_name(connection: socket.socket) -> str:
    """The CN of the verified client certificate on ``connection``; "" when there is none."""
    assert isinstance(connection, ssl.SSLSocket)
    for rdn in (connection.getpeercert() or {}).get("subject", ()):
        for pair in rdn:
            if pair[0] == "commonName":
                return str(pair[1])
    return ""
