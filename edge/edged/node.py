"""The Node object and its status, as this machine is: capacity, allocatable, addresses, conditions, nodeInfo.

The machine is probed in edge/edged/machine.py; this module only puts the facts in the shape of a
v1 NodeStatus, the way the kubelet does, since the scheduler (allocatable, pressure taints) and
kubectl (``get nodes -o wide``) read them.
"""

from __future__ import annotations

import functools
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge.edged import machine
from edge.edged.machine import MAX_PODS, MachineInfo, Reserve, Thresholds, Usage, allocatable, arch
from schemas.kubeobj import EDGE_ROLE_LABEL
from schemas.timefmt import rfc3339

KUBELET_VERSION = "v1.20.2-edgehive-v0.1.0"
"""What nodeInfo.kubeletVersion says: the Kubernetes release whose kubelet behaviour EdgeD implements (1.20, the
API server edgehive is built against), then edgehive's own version, as KubeEdge writes ``v1.22.6-kubeedge-v1.12.0``.
It must parse as a semantic version: kubectl shows it as the node's VERSION, and control-plane code that checks
a kubelet's version (version-skew and feature gates) reads it as that Kubernetes release."""


@functools.cache
def local_machine() -> MachineInfo:
    return MachineInfo.probe()


@dataclass(frozen=True)
class NodeFacts:
    """What the status is built from besides the moment's usage: fixed for as long as EdgeD runs."""

    machine: MachineInfo = field(default_factory=local_machine)
    runtime_version: str = "podman://unknown"
    """``podman://4.3.1``: the runtime's name and version, as the kubelet reports ``containerd://1.6.8``."""
    reserve: Reserve = field(default_factory=Reserve)
    thresholds: Thresholds = field(default_factory=Thresholds)
    max_pods: int = MAX_PODS
    fs_path: Path = Path("/")
    """Where pods' ephemeral storage lives (EdgeD's data directory): the kubelet's nodefs."""


def capacity() -> dict[str, str]:
    """This machine's capacity now, its root filesystem for ephemeral-storage (the downward API's fallback for a
    limit a container does not set: edge/edged/projection.py)."""
    return machine.capacity(Usage.probe(Path("/")))


def _condition(kind: str, true: bool, reason: str, message: str, now: str) -> dict[str, Any]:
    return {"type": kind, "status": "True" if true else "False", "reason": reason, "message": message,
            "lastHeartbeatTime": now, "lastTransitionTime": now}


def node_status(host_ip: str, ready: bool, message: str, heartbeat: float | None = None,
                disk_full: str | None = None, *, facts: NodeFacts | None = None,
                usage: Usage | None = None) -> dict[str, Any]:
    """``disk_full``: why the node's stores refuse writes (DiskPressure whatever the free space), None while they
    do not. ``usage`` defaults to the machine as it is now."""
    facts = facts or NodeFacts()
    usage = usage or Usage.probe(facts.fs_path)
    now = rfc3339(heartbeat or time.time())
    limits = facts.thresholds
    memory = limits.memory_pressure(usage)
    disk = disk_full or limits.disk_pressure(usage)
    pids = limits.pid_pressure(usage)
    info = facts.machine
    return {
        "capacity": machine.capacity(usage, facts.max_pods),
        "allocatable": allocatable(usage, facts.reserve, limits, facts.max_pods),
        "addresses": [{"type": "InternalIP", "address": host_ip},
                      {"type": "Hostname", "address": info.hostname}],
        # The kubelet's order: the pressures, then Ready.
        "conditions": [
            _condition("MemoryPressure", memory is not None,
                       "EdgeHasInsufficientMemory" if memory else "EdgeHasSufficientMemory",
                       memory or "the node has sufficient memory available", now),
            _condition("DiskPressure", disk is not None, "EdgeHasDiskPressure" if disk else "EdgeHasNoDiskPressure",
                       disk or "the node has no disk pressure", now),
            _condition("PIDPressure", pids is not None, "EdgeHasInsufficientPID" if pids else "EdgeHasSufficientPID",
                       pids or "the node has sufficient PID available", now),
            _condition("Ready", ready, "EdgeReady" if ready else "EdgeNotReady", message, now),
        ],
        "nodeInfo": {
            "machineID": info.machine_id, "systemUUID": info.system_uuid, "bootID": info.boot_id,
            "kernelVersion": info.kernel_version, "osImage": info.os_image, "operatingSystem": "linux",
            "architecture": info.architecture, "containerRuntimeVersion": facts.runtime_version,
            "kubeletVersion": KUBELET_VERSION,
            "kubeProxyVersion": "",  # no kube-proxy runs on an edge node
        },
    }


def node_object(name: str, host_ip: str, ready: bool, message: str, disk_full: str | None = None, *,
                facts: NodeFacts | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": {
            EDGE_ROLE_LABEL: "", "kubernetes.io/hostname": name, "kubernetes.io/os": "linux",
            "kubernetes.io/arch": arch()}},
        "spec": {},
        "status": node_status(host_ip, ready, message, disk_full=disk_full, facts=facts),
    }


def host_ip() -> str:
    """The address other hosts would reach this node on (no packet is sent)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("10.255.255.255", 1))
            return str(s.getsockname()[0])
        except OSError:
            return "127.0.0.1"
