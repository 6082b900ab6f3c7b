"""The node's status as EdgeD builds it from the machine: allocatable, pressure, nodeInfo."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge.edged.machine import MI, MachineInfo, Reserve, Thresholds, Usage, allocatable, capacity, os_image
from edge.edged.node import KUBELET_VERSION, NodeFacts, node_status
from schemas.reports import NodeStatus

GI = 1024 * MI
MACHINE = MachineInfo(os_image="Debian GNU/Linux 12 (bookworm)", kernel_version="6.1.0", architecture="arm64",
                      machine_id="m1", system_uuid="u1", boot_id="b1", hostname="gateway-7")
CALM = Usage(cpus=4, memory_total=8 * GI, memory_available=6 * GI, fs_total=100 * GI, fs_available=50 * GI,
             pid_limit=32768, pids_used=300)


def _conditions(usage: Usage, disk_full: str | None = None) -> dict[str, dict[str, str]]:
    status = node_status("10.0.0.5", True, "podman is ready", 1_700_000_000.0, disk_full,
                         facts=NodeFacts(machine=MACHINE, runtime_version="podman://4.3.1"), usage=usage)
    return {c["type"]: c for c in status["conditions"]}


def test_allocatable_is_capacity_less_the_reserve_and_the_eviction_thresholds() -> None:
    reserve = Reserve.parse("cpu=500m, memory=1Gi,ephemeral-storage=2Gi")
    assert reserve == Reserve(cpu_millis=500, memory=GI, ephemeral_storage=2 * GI)
    assert capacity(CALM) == {"cpu": "4", "memory": f"{8 * GI // 1024}Ki", "pods": "110",
                              "ephemeral-storage": f"{100 * GI // 1024}Ki"}
    assert allocatable(CALM, reserve, Thresholds()) == {
        "cpu": "3500m", "memory": f"{(7 * GI - 100 * MI) // 1024}Ki", "pods": "110",
        "ephemeral-storage": f"{(90 * GI - 2 * GI) // 1024}Ki"}
    assert allocatable(CALM, Reserve(), Thresholds())["cpu"] == "4"


@pytest.mark.parametrize("text", ["cpu", "gpu=1", "memory=lots", "cpu=1,memory"])
def test_a_bad_reserve_is_refused_with_the_part_named(text: str) -> None:
    with pytest.raises(ValueError, match="reserve"):
        Reserve.parse(text)


def test_no_pressure_on_a_calm_machine() -> None:
    found = _conditions(CALM)
    assert [found[k]["status"] for k in ("MemoryPressure", "DiskPressure", "PIDPressure", "Ready")] == \
        ["False", "False", "False", "True"]


@pytest.mark.parametrize(("usage", "kind", "words"), [
    (Usage(4, 8 * GI, 99 * MI, 100 * GI, 50 * GI, 32768, 300), "MemoryPressure", "memory.available 99Mi"),
    (Usage(4, 8 * GI, 6 * GI, 100 * GI, 9 * GI, 32768, 300), "DiskPressure", "nodefs.available 9.0%"),
    (Usage(4, 8 * GI, 6 * GI, 100 * GI, 50 * GI, 1000, 950), "PIDPressure", "950 of the kernel's 1000"),
])
def test_pressure_at_the_kubelets_eviction_thresholds(usage: Usage, kind: str, words: str) -> None:
    found = _conditions(usage)
    assert found[kind]["status"] == "True"
    assert words in found[kind]["message"]
    assert found["Ready"]["status"] == "True"  # pressure taints the node; it does not make it NotReady
    others = {"MemoryPressure", "DiskPressure", "PIDPressure"} - {kind}
    assert all(found[k]["status"] == "False" for k in others)


def test_stores_refusing_writes_is_disk_pressure_whatever_the_free_space() -> None:
    found = _conditions(CALM, disk_full="the outbox's disk has 3 MB free")
    assert found["DiskPressure"]["status"] == "True"
    assert found["DiskPressure"]["message"] == "the outbox's disk has 3 MB free"


def test_node_info_and_addresses_as_the_kubelet_reports_them() -> None:
    status = node_status("10.0.0.5", True, "ok", facts=NodeFacts(machine=MACHINE, runtime_version="podman://4.3.1"),
                         usage=CALM)
    assert status["nodeInfo"] == {
        "machineID": "m1", "systemUUID": "u1", "bootID": "b1", "kernelVersion": "6.1.0",
        "osImage": "Debian GNU/Linux 12 (bookworm)", "operatingSystem": "linux", "architecture": "arm64",
        "containerRuntimeVersion": "podman://4.3.1", "kubeletVersion": KUBELET_VERSION, "kubeProxyVersion": ""}
    assert status["addresses"] == [{"type": "InternalIP", "address": "10.0.0.5"},
                                   {"type": "Hostname", "address": "gateway-7"}]
    NodeStatus.parse(status)  # what EdgeController accepts


def test_the_kubelet_version_parses_as_the_kubernetes_release() -> None:
    major_minor_patch, _, build = KUBELET_VERSION.partition("-")
    assert major_minor_patch == "v1.20.2"
    assert build.startswith("edgehive-v")


def test_os_image_is_pretty_name(tmp_path: Path) -> None:
    path = tmp_path / "os-release"
    path.write_text('NAME="Debian GNU/Linux"\nPRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nID=debian\n')
    assert os_image(str(path)) == "Debian GNU/Linux 12 (bookworm)"
    assert os_image(str(path) + ".missing") == "Linux"


def test_the_probe_reads_this_machine() -> None:
    info = MachineInfo.probe()
    assert info.kernel_version
    assert info.boot_id
    assert info.os_image
    usage = Usage.probe(Path("/"))
    assert usage.memory_total > usage.memory_available > 0
    assert usage.fs_total >= usage.fs_available > 0
    assert usage.pid_limit > usage.pids_used > 0
