"""The per-hop trace (runtime/hoptrace.py) and its summary (edgehive/bench/hops.py): a register change followed
from its write through each component's hop to the Device status."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from edgehive.bench.hops import breakdown, device_of, load

ROOT = Path(__file__).resolve().parents[2]
MS = 1_000_000


def test_every_hop_key_names_its_device() -> None:
    assert device_of("default/mb-3") == "default/mb-3"
    assert device_of("default/devicestatus/mb-3") == "default/mb-3"
    assert device_of("default/mb-3/p0=17") == "default/mb-3"


def test_a_change_is_followed_hop_by_hop_to_the_status(tmp_path: Path) -> None:
    change = "default/mb-1/p0=5"
    lines = [("register_written", change, 0), ("mapper_read", "default/mb-1/p0=4", 0),  # an older value
             ("mapper_read", change, 400), ("mapper_report", "default/mb-1", 405),
             ("mapper_report", "default/mb-2", 406),  # another device's report is not this change's
             ("dmi_received", "default/mb-1", 410), ("dmi_handed", "default/mb-1", 411),
             ("twin_applied", "default/mb-1", 420), ("twin_sent", "default/devicestatus/mb-1", 500),
             ("edgehub_outbox", "default/devicestatus/mb-1", 510), ("edgehub_sent", "default/devicestatus/mb-1", 515),
             ("dc_received", "default/devicestatus/mb-1", 530), ("dc_written", "default/mb-1", 560),
             ("status_seen", change, 565)]
    (tmp_path / "1.hops").write_text("".join(f"{h}\t{k}\t{t * MS}\n" for h, k, t in lines))
    delays = breakdown(load(tmp_path))
    assert {hop: values[0] for hop, values in delays.items()} == {
        "mapper_read": 400.0, "mapper_report": 5.0, "dmi_received": 5.0, "dmi_handed": 1.0, "twin_applied": 9.0,
        "twin_sent": 80.0, "edgehub_outbox": 10.0, "edgehub_sent": 5.0, "dc_received": 15.0, "dc_written": 30.0,
        "status_seen": 5.0, "total": 565.0}


def test_off_unless_asked_and_on_it_writes_one_file_per_process(tmp_path: Path) -> None:
    code = "from runtime import hoptrace; print(hoptrace.enabled()); hoptrace.hop('twin_sent', 'default/d')"
    off = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT,
                         env={"PATH": "/usr/bin:/bin"})
    assert off.stdout.strip() == "False"
    on = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT,
                        env={"PATH": "/usr/bin:/bin", "EDGEHIVE_HOP_TRACE": str(tmp_path / "hops")})
    assert on.stdout.strip() == "True"
    (written,) = (tmp_path / "hops").glob("*.hops")
    hop, key, at = written.read_text().strip().split("\t")
    assert (hop, key) == ("twin_sent", "default/d")
    assert int(at) > 0


def test_a_forked_child_decides_from_its_own_environment_and_writes_its_own_file(tmp_path: Path) -> None:
    """As an edge component forked from the fork server: the module is imported by the parent, which does not
    trace; the child is given the variable after the fork and traces into a file of its own pid."""
    code = (
        "import os, sys\n"
        "from runtime import hoptrace\n"
        "print(hoptrace.enabled(), flush=True)\n"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        f"    os.environ['EDGEHIVE_HOP_TRACE'] = {str(tmp_path / 'hops')!r}\n"
        "    hoptrace.hop('twin_sent', 'default/d')\n"
        "    print(os.getpid(), flush=True)\n"
        "    os._exit(0)\n"
        "os.waitpid(pid, 0)\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT,
                         env={"PATH": "/usr/bin:/bin"})
    parent_enabled, child_pid = run.stdout.split()
    assert parent_enabled == "False"
    assert [p.name for p in (tmp_path / "hops").glob("*.hops")] == [f"{child_pid}.hops"]
