"""Pod network state that a killed podman lost track of, found by what proves it is a test's own, and removed.

A crash scenario that SIGKILLs podman on a node's host (the power cut kills ``edgehive edge``'s podman
service) can catch it in the middle of starting a pod, between making the pod's network namespace
(``/run/netns/netns-*``) and recording it in its database. EdgeD then makes that half-made pod again
(edge/edged/kubelet.py), and ``podman pod rm`` removes only what podman recorded: the namespace, the
address CNI's host-local IPAM gave it and CNI's cached result stay, one set per unlucky cut, and pile up on
the machine. On a real machine a power cut empties /run and podman starts afresh; a test's cut leaves /run.

The machine is shared (other tests' podman roots make pods at the same time), so only what is provably a
test's own is removed:
- CNI's cached result names the pod (``K8S_POD_NAME``, podman's ``NAMESPACE_NAME``): a test's namespace is
  its own. Its sandbox, address and cache go when podman no longer has the container.
- A namespace killed before CNI ran (or whose start failed in CNI, as a restarted podman's can) has no cache
  and nothing in it but ``lo``: it is the test's when it was made from the moments before one of the test's
  own cuts to the node's recovery from it and, long after, still has no process in it.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

NETNS_DIR = Path("/run/netns")
CNI_IPAM_DIR = Path("/var/lib/cni/networks")
CNI_RESULTS_DIR = Path("/var/lib/cni/results")
CUT_WINDOW_S = 10.0
"""How long before a cut a namespace found empty afterwards may have been made by the podman it killed."""


def _ip(*args: str) -> str:
    result = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30, check=False)
    return result.stdout if result.returncode == 0 else ""


def _unused(netns: Path) -> bool:
    return netns.exists() and not _ip("netns", "pids", netns.name).split()


def _delete_netns(netns: Path) -> str:
    subprocess.run(["ip", "netns", "delete", netns.name], capture_output=True, timeout=30, check=False)
    return str(netns)


def _podman_has(container: str) -> bool:
    return subprocess.run(["podman", "container", "exists", container], capture_output=True, timeout=60,
                          check=False).returncode == 0


def release_lost_pod_networks(namespace: str) -> list[str]:
    """Remove the CNI state of the pods of ``namespace`` (podman names them NAMESPACE_NAME in the default
    storage) whose container podman no longer has; returns what was removed."""
    removed = []
    for path in sorted(CNI_RESULTS_DIR.glob("*")):
        try:
            cached = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        pod = dict((str(k), str(v)) for k, v in cached.get("cniArgs") or []).get("K8S_POD_NAME", "")
        container = str(cached.get("containerId") or "")
        if not pod.startswith(f"{namespace}_") or not container or _podman_has(container):
            continue
        result = cached.get("result") or {}
        for interface in result.get("interfaces") or []:
            sandbox = Path(str(interface.get("sandbox") or ""))
            if sandbox.parent == NETNS_DIR and _unused(sandbox):
                removed.append(_delete_netns(sandbox))
        for ip in result.get("ips") or []:
            entry = CNI_IPAM_DIR / str(cached.get("networkName")) / str(ip.get("address", "")).split("/")[0]
            if entry.is_file() and entry.read_text().split()[:1] == [container]:
                entry.unlink()
                removed.append(str(entry))
        path.unlink(missing_ok=True)
        removed.append(str(path))
    return removed


def release_namespaces_cut_short(windows: Sequence[tuple[float, float | None]]) -> list[str]:
    """Remove the namespaces with no process and no interface but ``lo`` made during one of ``windows``: from
    CUT_WINDOW_S before a cut (time.time()) to the end of the node's recovery from it (None: still going),
    when the killed podman, and the new one starting the pods again, may leave them. Call it long after the
    last cut, when every pod that was being started then has either a process in its namespace or none ever
    will."""
    now = time.time()
    removed = []
    for netns in sorted(NETNS_DIR.glob("netns-*")):
        try:
            made = netns.stat().st_mtime
        except OSError:
            continue
        if not any(cut - CUT_WINDOW_S <= made <= (end or now) for cut, end in windows) or not _unused(netns):
            continue
        links = [line.split(":")[1].strip() for line in _ip("-n", netns.name, "-o", "link", "show").splitlines()
                 if line.count(":") >= 2]
        if links == ["lo"]:
            removed.append(_delete_netns(netns))
    return removed
