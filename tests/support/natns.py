"""An edge host behind NAT on this machine: a network namespace that can dial out and that nothing can dial into.

The namespace is joined to this one (the cloud's host) by a veth pair on a /30 of its own. From the inside, the
default route goes out through the veth, and what leaves this host for elsewhere is masqueraded (a home router's
NAT). From this side, the host's firewall drops every new connection that would go into the namespace, locally
made (OUTPUT) or forwarded (FORWARD); replies to the edge's own connections pass (conntrack ESTABLISHED), as they
do through a NAT gateway. IPv6 is off on both ends, so no link-local address is a way in either.

Everything made here carries the namespace's name, which carries the PID of the test process that made it
(iptables rules by comment), so that a clean-up finds what a crashed run left behind and nothing of anyone else's.

Processes run inside with ``nsenter --net`` (podman works there only that way, not through ``ip netns exec``: see
ENVIRONMENT.md). The test process itself looks into the namespace, as one would from a shell on the edge machine,
by moving one thread there for a moment (``entered``): sockets made meanwhile stay in the namespace afterwards.
"""

from __future__ import annotations

import contextlib
import ctypes
import itertools
import os
import shlex
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

PREFIX = "ehnat"
COMMENT = "edgehive-natns"
SUBNETS = 16384
"""/30s in 10.233.0.0/16."""
CLONE_NEWNET = 0x40000000
_counter = itertools.count(1)
_libc = ctypes.CDLL(None, use_errno=True)


class NatSetupError(AssertionError):
    """The namespace could not be made (not root, or no iproute2/iptables): the message says which command."""


def _run(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(list(argv), capture_output=True, text=True, timeout=30, check=False)
    if check and result.returncode != 0:
        raise NatSetupError(f"{' '.join(argv)}: {result.stderr.strip()} (needs root, iproute2 and iptables)")
    return result


@dataclass
class NatNamespace:
    name: str
    veth: str
    """The host's end of the pair; the namespace's end is its eth0."""
    host_address: str
    """The host's address on the link: the edge's gateway, where the cloud listens for it."""
    address: str
    """The namespace's own address (the node's InternalIP), which nothing on the host can connect to."""
    subnet: str
    cleanups: list[Callable[[], None]] = field(default_factory=list)
    """Run (last added first) before the namespace goes: whatever runs inside registers its own stop here."""

    def argv(self, *command: str) -> list[str]:
        return ["nsenter", f"--net=/run/netns/{self.name}", *command]

    def rules(self) -> list[tuple[str, list[str]]]:
        """The host's iptables rules for this namespace: (table, rule spec)."""
        tag = ["-m", "comment", "--comment", f"{COMMENT} {self.name}"]
        no_new = ["-m", "conntrack", "--ctstate", "NEW", "-j", "DROP"]
        return [("filter", ["OUTPUT", "-o", self.veth, *tag, *no_new]),
                ("filter", ["FORWARD", "-o", self.veth, *tag, *no_new]),
                ("nat", ["POSTROUTING", "-s", self.subnet, "!", "-o", self.veth, *tag, "-j", "MASQUERADE"])]

    def pids(self) -> list[int]:
        """Every process whose network namespace this is."""
        out = _run("ip", "netns", "pids", self.name, check=False).stdout
        return [int(pid) for pid in out.split()]


@contextlib.contextmanager
def entered(name: str | None) -> Iterator[None]:
    """Run the block with this thread in network namespace ``name`` (no change for None). Sockets made in the
    block, and threads started there (an MQTT client's loop), stay in the namespace after it."""
    if name is None:
        yield
        return
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    target = os.open(f"/run/netns/{name}", os.O_RDONLY)
    try:
        _setns(target)
        try:
            yield
        finally:
            _setns(own)
    finally:
        os.close(own)
        os.close(target)


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"setns: {os.strerror(errno)}")


def _free_subnet(seed: int) -> tuple[str, str, str]:
    """A /30 of 10.233.0.0/16 that no interface of this host uses yet: (subnet, host end, namespace end)."""
    used = _run("ip", "-4", "-o", "addr", "show").stdout
    for step in range(SUBNETS):
        index = (seed + step) % SUBNETS
        base = f"10.233.{index // 64}.{(index % 64) * 4}"
        prefix = base.rsplit(".", 1)[0]
        last = int(base.rsplit(".", 1)[1])
        host, inner = f"{prefix}.{last + 1}", f"{prefix}.{last + 2}"
        if f" {host}/" not in used and f" {inner}/" not in used:
            return f"{base}/30", host, inner
    raise NatSetupError("no free /30 in 10.233.0.0/16")


def create() -> NatNamespace:
    """Make a namespace behind NAT; on any failure, what was made so far is removed again."""
    pid, n = os.getpid(), next(_counter)
    subnet, host, inner = _free_subnet(pid * 8 + n)
    ns = NatNamespace(f"{PREFIX}{pid}x{n}", f"ehn{pid}x{n}", host, inner, subnet)
    try:
        _run("ip", "netns", "add", ns.name)
        _run("ip", "link", "add", ns.veth, "type", "veth", "peer", "name", "eth0", "netns", ns.name)
        _run("sysctl", "-q", "-w", f"net.ipv6.conf.{ns.veth}.disable_ipv6=1")
        _run("ip", "addr", "add", f"{host}/30", "dev", ns.veth)
        _run("ip", "link", "set", ns.veth, "up")
        _run(*ns.argv("sysctl", "-q", "-w", "net.ipv6.conf.eth0.disable_ipv6=1"))
        for args in (("addr", "add", f"{inner}/30", "dev", "eth0"), ("link", "set", "eth0", "up"),
                     ("link", "set", "lo", "up"), ("route", "add", "default", "via", host)):
            _run("ip", "-n", ns.name, *args)
        for table, spec in ns.rules():
            chain, rest = spec[0], spec[1:]
            position = ["1"] if table == "filter" else []  # before anything that would accept the packet
            _run("iptables", "-w", "-t", table, "-I" if position else "-A", chain, *position, *rest)
    except BaseException:
        destroy(ns)
        raise
    return ns


def destroy(ns: NatNamespace) -> list[str]:
    """Stop what runs inside (its registered clean-ups, then any process left, SIGTERM then SIGKILL), delete the
    host's rules, the veth and the namespace. Never raises for what is already gone; returns what it had to
    kill beyond the clean-ups, and the clean-ups that failed, for the caller to report."""
    found: list[str] = []
    while ns.cleanups:
        cleanup = ns.cleanups.pop()
        try:
            cleanup()
        except BaseException as exc:  # the rest must go whatever one clean-up did (pytest.fail's too)
            if isinstance(exc, KeyboardInterrupt):
                raise
            found.append(f"clean-up {getattr(cleanup, '__qualname__', cleanup)} failed: {exc}")
    found += [f"process {pid} in {ns.name}" for pid in _stop_processes(ns)]
    _delete_rules(f"{COMMENT} {ns.name}")
    _run("ip", "netns", "delete", ns.name, check=False)
    _run("ip", "link", "delete", ns.veth, check=False)  # gone with the namespace's end, unless a process held it
    return found


def _stop_processes(ns: NatNamespace, grace_s: float = 10.0) -> list[int]:
    pids = ns.pids()
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while ns.pids() and time.monotonic() < deadline:
        time.sleep(0.1)  # polling the processes' exit, with the deadline above
    for pid in ns.pids():
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return pids


def _delete_rules(marker: str) -> list[str]:
    """Delete every rule of the filter and nat tables whose comment starts with ``marker``."""
    removed = []
    for table in ("filter", "nat"):
        for line in _run("iptables", "-w", "-t", table, "-S", check=False).stdout.splitlines():
            words = shlex.split(line)
            if words[:1] != ["-A"] or "--comment" not in words:
                continue
            if not words[words.index("--comment") + 1].startswith(marker):
                continue
            _run("iptables", "-w", "-t", table, "-D", *words[1:], check=False)
            removed.append(f"iptables -t {table} {line}")
    return removed


def leftovers(ns: NatNamespace) -> list[str]:
    """What of ``ns`` is still on the host: the namespace, the veth, rules."""
    found = []
    if Path(f"/run/netns/{ns.name}").exists():
        found.append(f"namespace {ns.name}")
    if _run("ip", "link", "show", ns.veth, check=False).returncode == 0:
        found.append(f"veth {ns.veth}")
    for table in ("filter", "nat"):
        found += [f"iptables -t {table} {line}" for line in _run("iptables", "-w", "-t", table, "-S").stdout
                  .splitlines() if f"{COMMENT} {ns.name}" in line]
    return found


def _pid_alive(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists()


def sweep_stale() -> list[str]:
    """Remove what earlier test processes, now gone, left behind (a run killed before its teardown)."""
    removed = []
    for path in Path("/run/netns").glob(f"{PREFIX}*x*"):
        owner = path.name[len(PREFIX):].split("x")[0]
        if owner.isdigit() and not _pid_alive(int(owner)):
            number = path.name.split("x", 1)[1]
            stale = NatNamespace(path.name, f"ehn{owner}x{number}", "", "", "")
            removed += [f"namespace {path.name}", *destroy(stale), *_delete_rules(f"{COMMENT} {path.name}")]
    for table in ("filter", "nat"):
        for line in _run("iptables", "-w", "-t", table, "-S", check=False).stdout.splitlines():
            if f"{COMMENT} {PREFIX}" not in line:
                continue
            owner = line.split(f"{COMMENT} {PREFIX}", 1)[1].split("x")[0]
            if owner.isdigit() and not _pid_alive(int(owner)):
                removed += _delete_rules(f"{COMMENT} {PREFIX}{owner}x")
    return removed
