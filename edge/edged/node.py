"""The Node object and its status, as this machine is: capacity, addresses, conditions, the edge label."""

from __future__ import annotations

import os
import platform
import socket
import time
from typing import Any

from schemas.kubeobj import EDGE_ROLE_LABEL
from schemas.timefmt import rfc3339

MAX_PODS = 110


def _memory_bytes() -> int:
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _arch() -> str:
    machine = platform.machine()
    return {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm"}.get(machine, machine)


def capacity() -> dict[str, str]:
    return {"cpu": str(os.cpu_count() or 1), "memory": f"{_memory_bytes() // 1024}Ki", "pods": str(MAX_PODS)}


def node_status(host_ip: str, ready: bool, message: str, heartbeat: float | None = None,
                disk_full: str | None = None) -> dict[str, Any]:
    """``disk_full``: why the node's stores refuse writes (kubelet's DiskPressure); None while they do not."""
    now = rfc3339(heartbeat or time.time())
    cap = capacity()
    return {
        "capacity": cap,
        "allocatable": cap,
        "addresses": [{"type": "InternalIP", "address": host_ip},
                      {"type": "Hostname", "address": socket.gethostname()}],
        "conditions": [{
            "type": "Ready", "status": "True" if ready else "False",
            "reason": "EdgeReady" if ready else "EdgeNotReady", "message": message,
            "lastHeartbeatTime": now, "lastTransitionTime": now,
        }, {
            "type": "DiskPressure", "status": "True" if disk_full else "False",
            "reason": "EdgeHasDiskPressure" if disk_full else "EdgeHasNoDiskPressure",
            "message": disk_full or "the node's stores have room", "lastHeartbeatTime": now,
            "lastTransitionTime": now,
        }],
        "nodeInfo": {"architecture": _arch(), "operatingSystem": "linux", "kernelVersion": platform.release(),
                     "kubeletVersion": "edgehive-0.1.0", "containerRuntimeVersion": "podman"},
    }


def node_object(name: str, host_ip: str, ready: bool, message: str, disk_full: str | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": {
            EDGE_ROLE_LABEL: "", "kubernetes.io/hostname": name, "kubernetes.io/os": "linux",
            "kubernetes.io/arch": _arch()}},
        "spec": {},
        "status": node_status(host_ip, ready, message, disk_full=disk_full),
    }


def host_ip() -> str:
    """The address other hosts would reach this node on (no packet is sent)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("10.255.255.255", 1))
            return str(s.getsockname()[0])
        except OSError:
            return "127.0.0.1"
