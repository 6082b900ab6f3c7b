"""Listening ports for servers a program starts itself (the benchmarks' and the tests'), picked from a range of
our own below Linux's ephemeral range (32768-60999).

The kernel picks the local port of every outgoing connection from the ephemeral range, and ``bind(0)`` hands out
a port from it too: a client socket opened between that pick and the server's bind can take the port, and the
server dies on ``address already in use``. Nothing takes a port below that range unless told to.
"""

from __future__ import annotations

import itertools
import os
import socket
from collections.abc import Iterator

from runtime.errors import ComponentRuntimeError


class NoFreePort(ComponentRuntimeError, RuntimeError):
    """Every port of the range is in use."""


class PortPicker:
    """Hands out the ports of ``ports`` that nothing listens on, on any address, in turn: none twice until the
    range wraps. It starts at an offset taken from the process id, so that runs one after another do not start
    on the same port."""

    def __init__(self, ports: range) -> None:
        self.ports = ports
        start = (os.getpid() * 7919) % len(ports)
        self._candidates: Iterator[int] = itertools.cycle([*ports[start:], *ports[:start]])

    def free_port(self) -> int:
        for _ in range(len(self.ports)):
            port = next(self._candidates)
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                try:
                    s.bind(("", port))
                except OSError:
                    continue
                return port
        raise NoFreePort(f"no free TCP port in {self.ports.start}-{self.ports.stop - 1}")
