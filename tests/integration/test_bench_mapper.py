"""``edgehive bench mapper`` at a tiny size, end to end: the real command starts a whole system, the DMI process,
the Modbus mapper and pymodbus's server, and its JSON report holds figures that make sense for that size."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow


def test_the_mapper_bench_reports_sane_figures_at_a_tiny_size() -> None:
    run = subprocess.run([sys.executable, "-m", "edgehive", "bench", "mapper", "--devices", "2", "--properties", "2",
                          "--seconds", "5", "--change-rate", "2", "--json"],
                         capture_output=True, text=True, timeout=280, check=False)
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads(run.stdout)
    assert (report["devices"], report["properties"], report["collect_cycle_ms"]) == (2, 2, 1000)
    assert report["offered_per_s"] == 4.0
    # 4 readings/s offered on each path: what reached the status is near that (a window's edges move it a little).
    for key in ("dmi_reports_per_s", "mqtt_reports_per_s"):
        assert 1.0 <= report[key] <= 8.0, (key, report)
    assert 0.25 <= report["ratio"] <= 4.0
    # About 10 changes in 5 s at 2/s; those seen took at least a Modbus round trip and less than a few cycles.
    assert 8 <= report["changes"] <= 12
    assert 1 <= report["changes_seen"] <= report["changes"]
    assert 0 < report["register_to_status_ms"]["p50"] <= report["register_to_status_ms"]["p99"] < 10_000
    assert 0 < report["mqtt_to_status_ms"]["p50"] <= report["mqtt_to_status_ms"]["p99"] < 10_000
    assert set(report["dmi_cpu_cores"]) == {"mapper", "dmi", "devicetwin", "modbus_server", "machine"}
    assert set(report["mqtt_cpu_cores"]) == {"devicetwin", "eventbus", "machine"}
    assert report["dmi_cpu_cores"]["mapper"] > 0
    assert report["mqtt_cpu_cores"]["devicetwin"] > 0
