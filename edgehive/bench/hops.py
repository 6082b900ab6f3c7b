"""Where a register change waits on its way to the Device status: the hops of ``runtime.hoptrace``, summed up.

``EDGEHIVE_HOP_TRACE=DIR edgehive bench mapper`` has every process write its hops to DIR; then
``python -m edgehive.bench.hops DIR`` follows each register change the bench made: from its write on the
Modbus server to the mapper's read of the new value, then at each later hop the first time that device
passed it, to the bench's watch seeing the value in the status. It prints each hop's p50 and mean in ms.
Following "the first time the device passed the next hop" is what a reading does when nothing is lost on the
way; a coalesced report carries the newer value, so the chain stays right for the value the status shows.
"""

from __future__ import annotations

import bisect
import statistics
import sys
from collections import defaultdict
from pathlib import Path

DEVICE_HOPS = ("mapper_report", "dmi_received", "dmi_handed", "twin_applied", "twin_sent", "edgehub_outbox",
               "edgehub_sent", "dc_received", "dc_written")
"""The hops a device's report passes after the mapper read a changed value, in order."""


def device_of(key: str) -> str:
    """``ns/name`` of a hop's key (``ns/name``, ``ns/kind/name`` or ``ns/name/prop=value``)."""
    parts = key.split("/")
    return f"{parts[0]}/{parts[2] if len(parts) == 3 and '=' not in parts[2] else parts[1]}"


def load(directory: Path) -> dict[str, dict[str, list[int]]]:
    """hop -> key -> sorted wall times (ns); device hops keyed by ``ns/name``."""
    out: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(list))
    for path in directory.glob("*.hops"):
        for line in path.read_text().splitlines():
            parts = line.split("\t")
            if len(parts) != 3:
                continue
            hop, key, at = parts
            out[hop][device_of(key) if hop in DEVICE_HOPS else key].append(int(at))
    for keys in out.values():
        for times in keys.values():
            times.sort()
    return out


def _first_after(times: list[int], t: int) -> int | None:
    i = bisect.bisect_left(times, t)
    return times[i] if i < len(times) else None


MQTT_HOPS = DEVICE_HOPS[DEVICE_HOPS.index("twin_applied"):]
"""The baseline's readings, published on $hw/events, join the DMI's path at DeviceTwin."""


def breakdown(hops: dict[str, dict[str, list[int]]], start: str = "register_written") -> dict[str, list[float]]:
    """Each hop's delays in ms, from the hop before, for every value followed to the end: the register changes
    (``start`` register_written) or the baseline's readings (mqtt_published)."""
    delays: dict[str, list[float]] = defaultdict(list)
    mapper = start == "register_written"
    for key, written in hops.get(start, {}).items():
        seen = hops.get("status_seen", {}).get(key)
        read = _first_after(hops.get("mapper_read", {}).get(key, []), written[0]) if mapper else written[0]
        if not seen or read is None:
            continue
        device = device_of(key)
        steps = [("mapper_read", read)] if mapper else []
        at = read
        for hop in DEVICE_HOPS if mapper else MQTT_HOPS:
            found = _first_after(hops.get(hop, {}).get(device, []), at)
            if found is None:
                break
            steps.append((hop, found))
            at = found
        else:
            steps.append(("status_seen", seen[0]))
            before = written[0]
            for hop, t in steps:
                delays[hop].append((t - before) / 1e6)
                before = t
            delays["total"].append((seen[0] - written[0]) / 1e6)
    return delays


def main() -> None:
    hops = load(Path(sys.argv[1]))
    for start in ("register_written", "mqtt_published"):
        print(f"from {start}: {'hop (delay from the one before)':<34}{'p50 ms':>10}{'mean ms':>10}{'n':>7}")
        for hop, values in breakdown(hops, start).items():
            print(f"{'':<{len(start) + 6}}{hop:<34}{statistics.median(values):>10.1f}{statistics.fmean(values):>10.1f}"
                  f"{len(values):>7}")


if __name__ == "__main__":
    main()
