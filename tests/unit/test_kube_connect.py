"""``Kube.connect(kubeconfig, server=...)`` sends its requests to ``server``, whatever the kubeconfig names, also
for a kubeconfig with a bearer token (whose refresh hook reloaded the kubeconfig's server before each request)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest
import yaml

from cloud.kube import Kube


class NodeHandler(BaseHTTPRequestHandler):
    seen: ClassVar[list[tuple[str, str | None]]] = []

    def do_GET(self) -> None:
        NodeHandler.seen.append((self.path, self.headers.get("Authorization")))
        body = json.dumps({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def api() -> Iterator[str]:
    server = HTTPServer(("127.0.0.1", 0), NodeHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    NodeHandler.seen = []
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


def kubeconfig(tmp_path: Path, user: dict[str, Any]) -> str:
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "c", "cluster": {"server": "http://192.0.2.1:6443"}}],  # TEST-NET: never reached
        "users": [{"name": "u", "user": user}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}]}))
    return str(path)


@pytest.mark.parametrize("user", [{"token": "secret-token"}, {"username": "a", "password": "b"}])
def test_server_overrides_the_kubeconfig_address(api: str, tmp_path: Path, user: dict[str, Any]) -> None:
    kube = Kube.connect(kubeconfig(tmp_path, user), server=api, wait_s=1)
    try:
        assert kube.get_node("n1") == {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"}}
        assert kube.get_node("n1") is not None  # the second request too, after the refresh hook has run again
    finally:
        kube.close()
    assert [path for path, _ in NodeHandler.seen] == ["/api/v1/nodes/n1", "/api/v1/nodes/n1"]
    if "token" in user:
        assert NodeHandler.seen[0][1] == "Bearer secret-token"
