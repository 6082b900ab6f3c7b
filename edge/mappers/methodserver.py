"""The mapper's HTTP port (``--api-listen``): methodapi.py's answers on a threaded standard-library server.

Only GET and PUT are routed; a request with a body is refused (the value travels in the path, as
KubeEdge's API has it), and its connection closed, since the body is left unread. The server is plain HTTP
on the address given, like KubeEdge's mapper framework: bind it to the node's loopback unless the callers
need more.
"""

from __future__ import annotations

import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

from edge.mappers.methodapi import MethodTarget, answer
from runtime.address import Address

log = logging.getLogger(__name__)


class MethodServer:
    def __init__(self, target: MethodTarget, listen: str) -> None:
        address = Address.parse(listen, any_host=True, what="mapper API address (--api-listen)")
        self.server = ThreadingHTTPServer((address.bind_host, address.port), _handler(target))
        self.server.daemon_threads = True
        self._thread = threading.Thread(target=self.server.serve_forever, name="method-api", daemon=True)

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def start(self) -> MethodServer:
        self._thread.start()
        return self

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _handler(target: MethodTarget) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            has_body = (self.headers.get("Content-Length") or "0").strip() != "0" or \
                "chunked" in (self.headers.get("Transfer-Encoding") or "").lower()
            found = answer(target, self.command, urlsplit(self.path).path, has_body)
            if has_body:
                self.close_connection = True  # the body is left unread, so the connection cannot carry another
            body = json.dumps(found.body).encode()
            self.send_response(found.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_PUT = do_POST = do_DELETE = do_PATCH = _serve

        def log_message(self, format: str, *args: object) -> None:
            log.debug("method API: " + format, *args)

    return Handler
