"""The footprint bench's pure parts: reading smaps_rollup, telling edge processes apart, deciding a node is idle."""

import os
import subprocess
import sys

import pytest

from edgehive.bench.footprint import EDGE_PROCESSES, FORKSERVER, bench_footprint, classify, counted, expected, settled
from edgehive.bench.harness import BenchError
from edgehive.bench.procfs import Memory, cmdline, parent_pid, parse_smaps_rollup, read_memory
from tests.fixtures.processes import wait_until

ROLLUP = """\
555f71e57000-7ffc5f93a000 ---p 00000000 00:00 0                          [rollup]
Rss:               31624 kB
Pss:               12218 kB
Pss_Dirty:          8112 kB
Pss_Anon:           8100 kB
Pss_File:           4106 kB
Pss_Shmem:            12 kB
Shared_Clean:      19464 kB
Private_Dirty:      8112 kB
Swap:                  0 kB
SwapPss:               0 kB
"""

PY = "/work/main/.venv/bin/python"
EDGE = "127.0.0.1:41884"


def test_rollup_gives_pss_rss_and_anonymous_pss_in_kb() -> None:
    assert parse_smaps_rollup(ROLLUP) == Memory(pss_kb=12218, rss_kb=31624, anon_pss_kb=8100)


def test_rollup_of_an_old_kernel_without_pss_anon() -> None:
    old = "\n".join(line for line in ROLLUP.splitlines() if not line.startswith("Pss_"))
    assert parse_smaps_rollup(old) == Memory(pss_kb=12218, rss_kb=31624, anon_pss_kb=0)


def test_text_without_pss_is_refused() -> None:
    with pytest.raises(ValueError, match="not a smaps_rollup"):
        parse_smaps_rollup("Name:\tpython3\nVmRSS:\t  1000 kB\n")


def test_own_rollup_is_readable_and_pss_is_at_most_rss() -> None:
    memory = read_memory(os.getpid())
    assert 0 < memory.pss_kb <= memory.rss_kb


@pytest.mark.parametrize(
    ("cmdline", "name"),
    [
        ([PY, "-m", "broker", "--listen", EDGE], "edge-broker"),
        ([PY, "-m", "broker", f"--listen={EDGE}"], "edge-broker"),
        ([PY, "-m", "broker", "--listen", "127.0.0.1:41883", "--password-file", "/s/passwd"], None),  # the cloud's
        ([PY, "-m", "broker.bridge", "--node", "edge-1", "--edge", f"mqtt://{EDGE}"], "bridge"),
        ([PY, "-m", "edge.edgehub", "--node", "edge-1", "--outbox", "/s/outbox.db"], "edgehub"),
        ([PY, "-m", "edge.metamanager", "--db", "/s/m.db"], "metamanager"),
        ([PY, "-m", "edge.edged", "--podman-url", "unix:///s/podman.sock"], "edged"),
        ([PY, "-m", "edge.devicetwin"], "devicetwin"),
        ([PY, "-m", "edge.dmi", "--socket", "/s/dmi.sock"], "dmi"),
        ([PY, "-m", "edge.stream", "--node", "edge-1"], "edgestream"),
        ([PY, "-m", "edgehive.forkserver", "--requests", "3", "--replies", "6"], "forkserver"),
        (["python3", "-m", "edge.eventbus", "--broker", f"mqtt://{EDGE}"], "eventbus"),
        (["/usr/sbin/mosquitto", "-c", "/s/state/edge-broker/mosquitto/mosquitto.conf"], "edge-broker"),
        (["/usr/sbin/mosquitto", "-c", "/tmp/bench/cloud/mosquitto/mosquitto.conf"], None),  # another's mosquitto
        (["mosquitto"], None),
        (["podman", "system", "service", "--time=0", "unix:///s/podman.sock"], "podman"),
        (["/usr/bin/podman", "pod", "ps"], None),
        ([PY, "-m", "cloud.cloudhub"], None),
        ([PY, "-m", "cloud.edgecontroller", "--kubeconfig", "/s/kubeconfig"], None),
        ([PY, "-m", "edgehive", "up", "--edge-listen", EDGE], None),
        ([PY, "-m", "edge.storage"], None),
        (["etcd", "--name", "default"], None),
        (["/opt/edgehive/k8s/bin/kube-apiserver", "--etcd-servers=http://127.0.0.1:2379"], None),
        ([PY, "-c", "import time; time.sleep(60)"], None),
        ([], None),
    ],
)
def test_classify_names_each_edge_process_and_nothing_else(cmdline: list[str], name: str | None) -> None:
    assert classify(cmdline, EDGE) == name


def test_every_edge_process_has_a_command_line_that_classifies_to_it() -> None:
    lines = {"edge-broker": [PY, "-m", "broker", "--listen", EDGE], "bridge": [PY, "-m", "broker.bridge"]}
    lines |= {n: [PY, "-m", f"edge.{n}"] for n in EDGE_PROCESSES if n not in lines}
    assert {classify(line, EDGE) for line in lines.values()} == set(EDGE_PROCESSES)


def test_parent_pid_survives_a_command_name_with_spaces_and_parentheses() -> None:
    assert parent_pid("4242 (python3 (x) y) S 4100 4242 4242 0 -1 4194560 873 0") == 4100
    with open(f"/proc/{os.getpid()}/stat") as stat:
        assert parent_pid(stat.read()) == os.getppid()


def test_settled_needs_a_full_window_within_the_tolerance() -> None:
    assert not settled([100_000] * 4, window=5)
    assert settled([100_000] * 5, window=5)
    assert settled([50_000, 100_000, 100_500, 100_200, 101_000, 100_900], window=5, tolerance_kb=1024)
    assert not settled([100_000, 100_500, 102_000, 100_200, 101_000], window=5, tolerance_kb=1024)
    # 1 % of a large total is allowed even above the absolute tolerance
    assert settled([1_000_000, 1_009_000, 1_005_000], window=3, tolerance_kb=1024)


def test_a_forked_components_title_reads_as_its_command_line() -> None:
    """setproctitle leaves one string with spaces in /proc/PID/cmdline; it classifies like the exec'd one."""
    title = subprocess.Popen([sys.executable, "-c", "import setproctitle, time; "
                              "setproctitle.setproctitle('python -m edge.eventbus --node edge-1'); time.sleep(30)"])
    try:
        wait_until(lambda: cmdline(title.pid)[:2] == ["python", "-m"], timeout=20, what="the process's new title")
        assert classify(cmdline(title.pid), EDGE) == "eventbus"
    finally:
        title.kill()
        title.wait()


def test_a_native_bridge_node_has_no_bridge_process_to_count() -> None:
    assert expected("python") == EDGE_PROCESSES
    assert expected("native") == tuple(n for n in EDGE_PROCESSES if n != "bridge")
    pids = {name: i for i, name in enumerate((*expected("native"), FORKSERVER, "podman"), start=100)}
    assert counted(pids) == [*expected("native"), FORKSERVER]
    assert counted({**pids, "bridge": 99}) == [*EDGE_PROCESSES, FORKSERVER]


def test_the_native_bridge_on_amqtt_is_refused_before_anything_starts() -> None:
    with pytest.raises(BenchError, match=r"--bridge native .*--edge-broker amqtt"):
        bench_footprint(progress=False, edge_broker="amqtt", bridge="native")
