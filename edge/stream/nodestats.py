"""The node's own CPU and memory, read from ``/proc`` of the node's host, with the kubelet's meanings.

The kubelet takes them from the root cgroup (cAdvisor): CPU is the cumulative time the machine spent not
idle, memory's working set is usage less the inactive file cache (pages the kernel can drop at once).
``/proc`` gives the same on every host with no cgroup version to tell apart:

- CPU: ``user + nice + system + irq + softirq + steal`` of ``/proc/stat``'s ``cpu`` line, in clock ticks
  (USER_HZ, 100 on Linux); idle and iowait are idle time, and guest time is already counted in user.
- memory: usage is ``MemTotal - MemFree``, working set is usage less ``Inactive(file)``, RSS is
  ``AnonPages``, available is ``MemTotal`` less the working set (as the kubelet reports availableBytes).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from edge.errors import EdgeError

_BUSY_FIELDS = (0, 1, 2, 5, 6, 7)  # user nice system [idle iowait] irq softirq steal
USER_HZ = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


class NodeStatsError(EdgeError, OSError):
    """``/proc`` could not be read or has no line the figures need."""


@dataclass(frozen=True, slots=True)
class NodeSample:
    at: float  # seconds since the epoch
    cpu_ns: int  # cumulative CPU time the node was busy, nanoseconds over all cores
    memory_total: int
    memory_usage: int
    working_set: int
    rss: int
    boot_time: float  # seconds since the epoch

    @property
    def available(self) -> int:
        return max(self.memory_total - self.working_set, 0)


def read_node(proc: Path = Path("/proc")) -> NodeSample:
    try:
        stat = (proc / "stat").read_text()
        meminfo = (proc / "meminfo").read_text()
    except OSError as exc:
        raise NodeStatsError(f"cannot read the node's figures from {proc}: {exc}") from exc
    cpu_ticks, boot = None, 0.0
    for line in stat.splitlines():
        fields = line.split()
        if fields and fields[0] == "cpu":
            ticks = [int(x) for x in fields[1:]]
            cpu_ticks = sum(ticks[i] for i in _BUSY_FIELDS if i < len(ticks))
        elif fields and fields[0] == "btime":
            boot = float(fields[1])
    if cpu_ticks is None:
        raise NodeStatsError(f"{proc / 'stat'} has no cpu line")
    memory = {}
    for line in meminfo.splitlines():
        name, _, rest = line.partition(":")
        value = rest.split()
        if value:
            memory[name] = int(value[0]) * 1024  # kB
    try:
        total, free = memory["MemTotal"], memory["MemFree"]
    except KeyError as exc:
        raise NodeStatsError(f"{proc / 'meminfo'} has no {exc.args[0]}") from None
    usage = total - free
    working_set = max(usage - memory.get("Inactive(file)", 0), 0)
    return NodeSample(time.time(), cpu_ticks * (1_000_000_000 // USER_HZ), total, usage, working_set,
                      memory.get("AnonPages", 0), boot)
