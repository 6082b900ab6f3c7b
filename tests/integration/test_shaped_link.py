"""The benchmarks' shaped link (edgehive.bench.shapedlink): a forwarded port reaches its destination across it,
``shape`` puts a token bucket on both ends, and leaving removes the namespace and the pair."""

from __future__ import annotations

import socket
import subprocess
import threading

from edgehive.bench.shapedlink import shaped_link


def _qdiscs(*prefix: str, device: str) -> str:
    return subprocess.run([*prefix, "tc", "qdisc", "show", "dev", device], capture_output=True, text=True,
                          check=True).stdout


def test_a_forwarded_port_crosses_the_link_and_the_link_is_shaped_and_removed() -> None:
    with shaped_link() as link:
        server = socket.create_server((link.host_address, 0))
        port = server.getsockname()[1]

        def echo_once() -> None:
            conn, _ = server.accept()
            with conn:
                conn.sendall(conn.recv(1024).upper())

        threading.Thread(target=echo_once, daemon=True).start()
        opened = link.forward(link.host_address, port)
        with socket.create_connection((link.address, opened), timeout=10) as client:
            client.settimeout(10)
            client.sendall(b"across the link")
            assert client.recv(1024) == b"ACROSS THE LINK"
        server.close()

        far = ("ip", "netns", "exec", link.namespace)
        link.shape(20)
        host_qdiscs = _qdiscs(device=link.host_device)
        assert "tbf" in host_qdiscs
        assert "20Mbit" in host_qdiscs
        assert "tbf" in _qdiscs(*far, device=link.far_device)
        link.unshape()
        assert "tbf" not in _qdiscs(device=link.host_device)
    names = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    assert link.namespace not in names
    links = subprocess.run(["ip", "link", "show"], capture_output=True, text=True, check=True).stdout
    assert link.host_device not in links
