"""Reading /proc: what a process maps and holds, its CPU time, its children, and how busy the machine is.

``bench footprint`` and ``bench scale`` measure processes the same way, from here. The parsers take the
files' text, so that they are tested on samples; the readers around them take a PID.
"""

from __future__ import annotations

import contextlib
import os
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from edgehive.bench.harness import BenchError

TICKS = os.sysconf("SC_CLK_TCK")
_ROLLUP_LINE = re.compile(r"^(\w+):\s+(\d+) kB$")


@dataclass(frozen=True)
class Memory:
    """One process's ``smaps_rollup`` figures, in kB (KiB, as the kernel writes them)."""

    pss_kb: int
    rss_kb: int
    anon_pss_kb: int


def parse_smaps_rollup(text: str) -> Memory:
    """Reads the rollup's ``Name: N kB`` lines; a kernel without ``Pss_Anon`` (< 5.7) reads as 0 for it."""
    fields: dict[str, int] = {}
    for line in text.splitlines():
        match = _ROLLUP_LINE.match(line.strip())
        if match:
            fields[match.group(1)] = int(match.group(2))
    if "Pss" not in fields or "Rss" not in fields:
        raise ValueError("no Pss/Rss lines: not a smaps_rollup")
    return Memory(pss_kb=fields["Pss"], rss_kb=fields["Rss"], anon_pss_kb=fields.get("Pss_Anon", 0))


def read_memory(pid: int) -> Memory:
    try:
        return parse_smaps_rollup(Path(f"/proc/{pid}/smaps_rollup").read_text())
    except OSError as exc:  # a process that died (and was restarted) under the measurement spoils it
        raise BenchError(f"process {pid} went away while being measured ({exc})") from exc


def stat_fields(stat: str) -> list[str]:
    """``/proc/PID/stat`` from the state on (field 3): the command name before it may hold spaces and
    parentheses, so it ends at the last ``)``."""
    return stat[stat.rindex(")") + 2:].split()


def parent_pid(stat: str) -> int:
    return int(stat_fields(stat)[1])


def cpu_seconds(stat: str, ticks_per_s: int) -> float:
    """User + system CPU seconds of all threads from a /proc/PID/stat line."""
    fields = stat_fields(stat)
    return (int(fields[11]) + int(fields[12])) / ticks_per_s


def start_time(pid: int) -> str:
    """Tells a process from a later one that reuses its PID (field 22 of stat)."""
    return stat_fields(Path(f"/proc/{pid}/stat").read_text())[19]


def cmdline(pid: int) -> list[str]:
    """A process's arguments; a title set by setproctitle (forked edge components) reads as one string, split here."""
    parts = Path(f"/proc/{pid}/cmdline").read_bytes().rstrip(b"\0").decode(errors="replace").split("\0")
    if len(parts) == 1:
        return parts[0].split(" ") if parts[0] else []
    return parts


def descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                children.setdefault(parent_pid((entry / "stat").read_text()), []).append(int(entry.name))
            except (OSError, ValueError):
                continue  # exited while we looked
    found, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def busy_cores(before: Sequence[int], after: Sequence[int]) -> float:
    """Cores kept busy between two /proc/stat 'cpu' lines (user nice system idle iowait irq softirq steal)."""
    total = sum(after[:8]) - sum(before[:8])
    idle = (after[3] + after[4]) - (before[3] + before[4])
    return (os.cpu_count() or 1) * (total - idle) / total if total > 0 else 0.0


def machine_ticks() -> list[int]:
    """The machine's 'cpu' line of /proc/stat."""
    return [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]


def cpu_of(pids: Mapping[str, list[int]]) -> dict[str, float]:
    """CPU seconds so far of each group of processes; one that has exited counts nothing."""
    out = {}
    for name, group in pids.items():
        total = 0.0
        for pid in group:
            with contextlib.suppress(OSError):
                total += cpu_seconds(Path(f"/proc/{pid}/stat").read_text(), TICKS)
        out[name] = total
    return out


@dataclass
class Window:
    """CPU of every process (and of the machine) between ``start()`` and ``stop()``."""

    pids: Mapping[str, list[int]]
    began: float = 0.0
    cpu: dict[str, float] = field(default_factory=dict)
    machine: list[int] = field(default_factory=list)

    def start(self) -> Window:
        self.began, self.cpu, self.machine = time.monotonic(), cpu_of(self.pids), machine_ticks()
        return self

    def stop(self) -> tuple[float, dict[str, float], float]:
        """(seconds, CPU seconds per process, machine cores busy)."""
        seconds = time.monotonic() - self.began
        after = cpu_of(self.pids)
        return (seconds, {k: round(after[k] - self.cpu[k], 2) for k in after},
                round(busy_cores(self.machine, machine_ticks()), 2))
