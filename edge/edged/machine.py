"""What this machine is and has, read from /proc, /sys and /etc the way the kubelet reads it.

Two kinds of facts: ``MachineInfo`` does not change while the node runs (OS image, kernel,
machine and boot ids), so it is read once; ``Usage`` (memory, disk, process ids) is read for
every status report. The status the node reports is built from them by edge/edged/node.py.

Pressure follows the kubelet's hard eviction defaults, since the controller-manager turns these
conditions into taints (``node.kubernetes.io/memory-pressure`` and friends) that the scheduler
honours: memory.available < 100Mi, nodefs.available < 10%, and, for process ids (the kubelet has
no default threshold there, only the kernel's limit), fewer than 10% of the kernel's pid limit free.
"""

from __future__ import annotations

import os
import platform
import re
import socket
from dataclasses import dataclass
from pathlib import Path

from edge.edged.quantity import quantity

MI = 2**20
MAX_PODS = 110
"""The kubelet's default --max-pods."""


def _read(path: str) -> str:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return ""


def arch() -> str:
    """The machine's architecture in Go's spelling, as kubernetes.io/arch and nodeInfo.architecture use it."""
    machine = platform.machine()
    return {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386"}.get(machine, machine)


def os_image(os_release: str = "/etc/os-release") -> str:
    """PRETTY_NAME of os-release (``Debian GNU/Linux 12 (bookworm)``), as the kubelet reports it."""
    for line in _read(os_release).splitlines():
        key, _, value = line.partition("=")
        if key == "PRETTY_NAME":
            return value.strip().strip('"').strip("'")
    return "Linux"


@dataclass(frozen=True)
class MachineInfo:
    """The facts of nodeInfo that hold for as long as the node runs."""

    os_image: str
    kernel_version: str
    architecture: str
    machine_id: str
    system_uuid: str
    """Empty where the firmware does not expose one (containers, most ARM boards), as the kubelet leaves it."""
    boot_id: str
    hostname: str

    @classmethod
    def probe(cls) -> MachineInfo:
        return cls(os_image=os_image(), kernel_version=platform.release(), architecture=arch(),
                   machine_id=_read("/etc/machine-id"), system_uuid=_read("/sys/class/dmi/id/product_uuid").lower(),
                   boot_id=_read("/proc/sys/kernel/random/boot_id"), hostname=socket.gethostname())


@dataclass(frozen=True)
class Usage:
    """What the machine has and what is free now; bytes, counts."""

    cpus: int
    memory_total: int
    memory_available: int
    fs_total: int
    fs_available: int
    pid_limit: int
    pids_used: int

    @classmethod
    def probe(cls, fs_path: Path) -> Usage:
        meminfo = _meminfo()
        try:
            st = os.statvfs(fs_path)
            fs_total, fs_available = st.f_blocks * st.f_frsize, st.f_bavail * st.f_frsize
        except OSError:
            fs_total = fs_available = 0
        return cls(cpus=os.cpu_count() or 1, memory_total=meminfo.get("MemTotal", 0),
                   memory_available=meminfo.get("MemAvailable", meminfo.get("MemFree", 0)),
                   fs_total=fs_total, fs_available=fs_available, pid_limit=_pid_limit(), pids_used=_tasks())


def _meminfo() -> dict[str, int]:
    out = {}
    for line in _read("/proc/meminfo").splitlines():
        name, _, rest = line.partition(":")
        fields = rest.split()
        if fields and fields[0].isdigit():
            out[name] = int(fields[0]) * (1024 if fields[1:] == ["kB"] else 1)
    return out


def _pid_limit() -> int:
    """The most tasks the kernel allows: the lower of pid_max and threads-max (each thread takes a pid)."""
    limits = [int(v) for v in (_read("/proc/sys/kernel/pid_max"), _read("/proc/sys/kernel/threads-max")) if v.isdigit()]
    return min(limits) if limits else 0


def _tasks() -> int:
    """Tasks (processes and threads) on the machine now: the denominator of loadavg's ``1/140``."""
    match = re.search(r"\s\d+/(\d+)\s", _read("/proc/loadavg"))
    return int(match.group(1)) if match else 0


@dataclass(frozen=True)
class Thresholds:
    """When the node reports pressure; the kubelet's hard eviction defaults."""

    memory_available: int = 100 * MI
    nodefs_available_fraction: float = 0.10
    pid_available_fraction: float = 0.10

    def memory_pressure(self, usage: Usage) -> str | None:
        if usage.memory_total and usage.memory_available < self.memory_available:
            return (f"memory.available {usage.memory_available // MI}Mi is below the eviction threshold "
                    f"{self.memory_available // MI}Mi")
        return None

    def disk_pressure(self, usage: Usage) -> str | None:
        if usage.fs_total and usage.fs_available < self.nodefs_available_fraction * usage.fs_total:
            return (f"nodefs.available {100 * usage.fs_available / usage.fs_total:.1f}% is below the eviction "
                    f"threshold {100 * self.nodefs_available_fraction:.0f}%")
        return None

    def pid_pressure(self, usage: Usage) -> str | None:
        if usage.pid_limit and usage.pid_limit - usage.pids_used < self.pid_available_fraction * usage.pid_limit:
            return (f"{usage.pids_used} of the kernel's {usage.pid_limit} process ids are in use: fewer than "
                    f"{100 * self.pid_available_fraction:.0f}% free")
        return None


@dataclass(frozen=True)
class Reserve:
    """What is kept back for the system and edgehive itself (the kubelet's --system-reserved and --kube-reserved
    together): cpu in millicores, memory and ephemeral-storage in bytes."""

    cpu_millis: int = 0
    memory: int = 0
    ephemeral_storage: int = 0

    @classmethod
    def parse(cls, text: str) -> Reserve:
        """``cpu=100m,memory=256Mi,ephemeral-storage=1Gi`` (the kubelet's flag syntax); any part may be left out."""
        values: dict[str, float] = {}
        for part in filter(None, (p.strip() for p in text.split(","))):
            name, _, text_value = part.partition("=")
            if name not in ("cpu", "memory", "ephemeral-storage"):
                raise ValueError(f"system reserve {part!r}: write cpu=100m, memory=256Mi or ephemeral-storage=1Gi")
            amount = quantity(text_value)
            if amount is None:
                raise ValueError(f"system reserve of {name}: {text_value!r} is not a quantity (e.g. 256Mi, 100m)")
            values[name] = amount
        return cls(cpu_millis=int(values.get("cpu", 0) * 1000), memory=int(values.get("memory", 0)),
                   ephemeral_storage=int(values.get("ephemeral-storage", 0)))


def capacity(usage: Usage, max_pods: int = MAX_PODS) -> dict[str, str]:
    return {"cpu": str(usage.cpus), "memory": f"{usage.memory_total // 1024}Ki", "pods": str(max_pods),
            "ephemeral-storage": f"{usage.fs_total // 1024}Ki"}


def allocatable(usage: Usage, reserve: Reserve, thresholds: Thresholds, max_pods: int = MAX_PODS) -> dict[str, str]:
    """Capacity less the reserve and less the hard eviction thresholds, as the kubelet computes it: what the
    scheduler may fill with pods' requests before the node would evict."""
    cpu = max(0, usage.cpus * 1000 - reserve.cpu_millis)
    memory = max(0, usage.memory_total - reserve.memory - thresholds.memory_available)
    storage = max(0, int(usage.fs_total * (1 - thresholds.nodefs_available_fraction)) - reserve.ephemeral_storage)
    return {"cpu": str(cpu // 1000) if cpu % 1000 == 0 else f"{cpu}m", "memory": f"{memory // 1024}Ki",
            "pods": str(max_pods), "ephemeral-storage": f"{storage // 1024}Ki"}
