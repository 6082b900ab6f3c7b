"""`edgehive up` (the README's main command) starts its brokers and stops them on Ctrl-C."""

from __future__ import annotations

import signal
import subprocess
import sys
from functools import partial
from pathlib import Path

from tests.fixtures.mqtt import TestClient, mqtt_ready
from tests.fixtures.processes import free_port, wait_until


def children_of(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def test_up_runs_both_brokers_until_interrupted(tmp_path: Path) -> None:
    cloud, edge = free_port(), free_port()
    log = (tmp_path / "up.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "edgehive", "up", "--cloud-listen", f"127.0.0.1:{cloud}",
         "--edge-listen", f"127.0.0.1:{edge}"],
        stdout=log, stderr=subprocess.STDOUT,
    )
    try:
        for port in (cloud, edge):
            wait_until(partial(mqtt_ready, "127.0.0.1", port, None, None), timeout=30,
                       what=f"edgehive up's broker on {port}")
        brokers = children_of(proc.pid)
        assert len(brokers) == 2
        with TestClient("127.0.0.1", edge) as c:
            c.subscribe("x")
            c.publish("x", b"hello")
            assert c.expect().payload == b"hello"
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
        for pid in brokers:
            assert not Path(f"/proc/{pid}").exists(), f"broker {pid} outlived edgehive up"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()
