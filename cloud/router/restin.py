"""The router's HTTP door: a call on ``/<node>/<namespace>/<path>`` becomes a publish on the node's event bus.

As KubeEdge's router listens (port 9443 by default, plain HTTP), with the same path layout: the
first segment names the edge node, the second the Rule's namespace, the rest its ``sourceResource``
path and anything after it, which is appended to the target topic. The body travels as it is,
through the node's link (CloudHub's reliable queue); the answer is 200 "message delivered" once it
is queued for the node. Everything is checked before anything is sent: an unknown node or Rule is
404, a body that is empty, too large or not the JSON its Content-Type says is refused with the reason.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

from cloud.errors import CloudError
from schemas.names import is_namespace, is_node_name

log = logging.getLogger(__name__)

MAX_BODY = 12 * 1024 * 1024
"""KubeEdge's MaxMessageBytes; the envelope's own limit may be lower (``Refused`` then says so)."""


@dataclass(frozen=True, slots=True)
class Call:
    node: str
    namespace: str
    path: str
    body: bytes


class Refused(CloudError):
    """A call the router will not carry: the HTTP status and the reason answered."""

    def __init__(self, status: HTTPStatus, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


Deliver = Callable[[Call], None]
"""Route one call (raises Refused with the status and the reason)."""


def parse_target(raw_path: str) -> tuple[str, str, str]:
    """``/<node>/<namespace>/<path...>`` -> (node, namespace, path); Refused (404) when it is not that."""
    parts = unquote(urlsplit(raw_path).path).strip("/").split("/", 2)
    if len(parts) < 3 or not all(parts):
        raise Refused(HTTPStatus.NOT_FOUND, "the path must be /<node>/<namespace>/<rule's sourceResource path>")
    node, namespace, path = parts
    if not is_node_name(node):
        raise Refused(HTTPStatus.NOT_FOUND, f"{node!r} is not a node name")
    if not is_namespace(namespace):
        raise Refused(HTTPStatus.NOT_FOUND, f"{namespace!r} is not a namespace name")
    return node, namespace, path


def check_body(body: bytes, content_type: str) -> None:
    if not body:
        raise Refused(HTTPStatus.BAD_REQUEST, "the body is empty: there is nothing to publish")
    if content_type.split(";", maxsplit=1)[0].strip().lower() == "application/json":
        try:
            json.loads(body)
        except ValueError as exc:
            raise Refused(HTTPStatus.BAD_REQUEST, f"the body is not the JSON its Content-Type says: {exc}") from exc


class CallHandler(BaseHTTPRequestHandler):
    server: RestDoor

    def do_POST(self) -> None:
        self._handle()

    def do_PUT(self) -> None:
        self._handle()

    def _handle(self) -> None:
        try:
            node, namespace, path = parse_target(self.path)
            length = self.headers.get("Content-Length")
            if length is None or not length.isdigit():
                raise Refused(HTTPStatus.LENGTH_REQUIRED, "a Content-Length is needed")
            if int(length) > MAX_BODY:
                raise Refused(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"the body is over {MAX_BODY} bytes")
            body = self.rfile.read(int(length))
            check_body(body, self.headers.get("Content-Type", ""))
            self.server.deliver(Call(node, namespace, path, body))
        except Refused as exc:
            log.info("refused %s %.200s: %s", self.command, self.path, exc.reason)
            self._answer(exc.status, exc.reason)
            return
        self._answer(HTTPStatus.OK, "message delivered")

    def _answer(self, status: HTTPStatus, text: str) -> None:
        data = text.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        log.debug("%s " + format, self.address_string(), *args)


class RestDoor(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], deliver: Deliver) -> None:
        super().__init__(address, CallHandler)
        self.deliver = deliver

    def serve_in_thread(self) -> threading.Thread:
        thread = threading.Thread(target=self.serve_forever, name="router-http", daemon=True)
        thread.start()
        return thread
