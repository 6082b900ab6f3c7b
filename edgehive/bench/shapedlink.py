"""A rate-limited link for benchmarks: what the cloud side reaches of an edge node over a real WAN.

On loopback a direct connection to a pod runs at GB/s, which no tunnel through two MQTT brokers matches, and
no edge link an operator has does either. This link is a veth pair to a network namespace of its own, with a
token bucket (tc ``tbf``; this kernel has no ``netem``) on both ends. A port opened on it is DNAT-ed inside
the namespace back to a destination in the host namespace, so a connection to ``(address, port)`` crosses
the shaped pair both ways and then reaches the destination. Both a benchmark's baseline and the path under test
are sent over it, so the ratio says how much of the link the path uses.

While not ``shape``-d the link is a plain veth pair and NAT: near loopback speed.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from edgehive.bench.harness import BenchError, free_port


def _run(*argv: str) -> None:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    if done.returncode != 0:
        raise BenchError(f"{' '.join(argv)} failed (the shaped link needs root, ip, tc and iptables): "
                         f"{done.stderr.strip()}")


@dataclass(frozen=True)
class ShapedLink:
    """``host_address``: this side's address on the pair (destinations listen there or beyond);
    ``address``: the far side's, where ``forward`` opens ports."""

    namespace: str
    host_device: str
    far_device: str
    host_address: str
    address: str

    def _in_namespace(self, *argv: str) -> None:
        _run("ip", "netns", "exec", self.namespace, *argv)

    def forward(self, host: str, port: int) -> int:
        """A port on ``address`` whose connections reach ``host:port`` through the link: that port."""
        opened = free_port()
        self._in_namespace("iptables", "-t", "nat", "-A", "PREROUTING", "-p", "tcp", "--dport", str(opened),
                           "-j", "DNAT", "--to-destination", f"{host}:{port}")
        # Answers must come back through the namespace, not straight from the host to the client.
        self._in_namespace("iptables", "-t", "nat", "-A", "POSTROUTING", "-p", "tcp", "-d", host, "--dport",
                           str(port), "-j", "MASQUERADE")
        return opened

    def shape(self, mbit: float) -> None:
        """Limit both ends to ``mbit`` Mbit/s (a burst of 64 KB, at most 50 ms queued)."""
        self._on_both_ends("replace", "tbf", "rate", f"{mbit}mbit", "burst", "64kb", "latency", "50ms")

    def unshape(self) -> None:
        self._on_both_ends("del")

    def _on_both_ends(self, verb: str, *qdisc: str) -> None:
        """``tc qdisc VERB dev END root QDISC...`` on this side's end of the pair and on the far one."""
        for prefix, device in (((), self.host_device), (("ip", "netns", "exec", self.namespace), self.far_device)):
            _run(*prefix, "tc", "qdisc", verb, "dev", device, "root", *qdisc)


@contextmanager
def shaped_link() -> Iterator[ShapedLink]:
    """A new link (unshaped until ``shape``), removed on exit with every rule on it."""
    tag = f"{os.getpid() % 100000:05d}"
    octet = 16 + os.getpid() % 200  # one /30 in 10.234.0.0/16 per process (the tests use 10.231 and 10.233)
    link = ShapedLink(namespace=f"ehwan-{tag}", host_device=f"ehw{tag}a", far_device=f"ehw{tag}b",
                      host_address=f"10.234.{octet}.1", address=f"10.234.{octet}.2")
    _run("ip", "netns", "add", link.namespace)
    try:
        _run("ip", "link", "add", link.host_device, "type", "veth", "peer", "name", link.far_device)
        _run("ip", "link", "set", link.far_device, "netns", link.namespace)
        _run("ip", "addr", "add", f"{link.host_address}/30", "dev", link.host_device)
        _run("ip", "link", "set", link.host_device, "up")
        link._in_namespace("ip", "addr", "add", f"{link.address}/30", "dev", link.far_device)
        link._in_namespace("ip", "link", "set", link.far_device, "up")
        link._in_namespace("ip", "link", "set", "lo", "up")
        link._in_namespace("ip", "route", "add", "default", "via", link.host_address)
        link._in_namespace("sysctl", "-qw", "net.ipv4.ip_forward=1")
        yield link
    finally:
        # Deleting the namespace deletes its end of the pair, and with it the host's end and every rule.
        subprocess.run(["ip", "netns", "del", link.namespace], capture_output=True, timeout=30, check=False)
        subprocess.run(["ip", "link", "del", link.host_device], capture_output=True, timeout=30, check=False)
