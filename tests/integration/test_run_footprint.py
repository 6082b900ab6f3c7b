"""A component started by ``edgehive run NAME`` (every container's command) costs no more, once it runs, than
the same component started by ``python -m``: the same modules loaded, about the same resident memory.

tests/unit/test_run_imports.py compares the two at the moment the component's main starts; this compares them
at steady state, on real parts (brokers, kube-apiserver, podman), where what a component imports while it runs
(the kubernetes client's models) has been imported. Each side has its own broker, so that the two
copies of a component never answer each other. A ``sitecustomize`` on the path of both sides writes
``sys.modules`` when the process gets SIGUSR2; the resident set is ``VmRSS`` from ``/proc/PID/status``.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import pytest

from edgehive.run import MODULES
from schemas import topics
from tests.fixtures.apiserver import ApiServer
from tests.fixtures.brokers import Broker, BrokerFactory
from tests.fixtures.mqtt import TestClient
from tests.fixtures.podman import Podman
from tests.fixtures.processes import ManagedProcess, wait_until
from tests.support.edge_node import status_up

ROOT = Path(__file__).resolve().parents[2]
COMPONENTS = ("edged", "cloudhub", "edgecontroller")
LAUNCHER = {"edgehive", "edgehive.cli", "edgehive.run"}  # what ``edgehive run`` is: the only modules it may add
RSS_SLACK_KB = 2048
"""Two copies of one component at rest differ by a few hundred kB (heap growth, the timing of a GC); the CLI's
benchmarks alone once added 17 MiB."""
SETTLE_SAMPLES = 5
SETTLE_TOLERANCE_KB = 512

DUMP_ON_SIGNAL = """
import os, signal, sys

def _dump(_signum, _frame):
    path = os.path.join(os.environ["EDGEHIVE_TEST_MODULES_DIR"], f"{os.getpid()}.modules")
    with open(path + ".part", "w") as out:
        out.write("\\n".join(sorted(sys.modules)))
    os.replace(path + ".part", path)

signal.signal(signal.SIGUSR2, _dump)
"""


@dataclass
class Started:
    component: str
    way: str
    process: ManagedProcess
    broker: Broker


def _argv(component: str, node: str, broker: Broker, api: ApiServer, podman: Podman, data: Path) -> list[str]:
    common = ["--broker", broker.url(), "--log-level", "info"]
    extra = {"edged": ["--node", node, "--podman-url", podman.base_url, "--data-dir", str(data / "edged"),
                       "--node-status-s", "2"],
             "cloudhub": [],
             "edgecontroller": ["--kubeconfig", str(api.kubeconfig)]}[component]
    return [*common, *extra]


def _rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for process {pid}")


def _settled(samples: dict[int, list[int]]) -> bool:
    return all(len(s) >= SETTLE_SAMPLES and max(s[-SETTLE_SAMPLES:]) - min(s[-SETTLE_SAMPLES:]) <= SETTLE_TOLERANCE_KB
               for s in samples.values())


def _modules(pid: int, directory: Path, process: ManagedProcess) -> set[str]:
    os.kill(pid, signal.SIGUSR2)
    dump = directory / f"{pid}.modules"
    wait_until(dump.exists, timeout=10, what=f"the module list of process {pid}", alive=process)
    return set(dump.read_text().splitlines())


@pytest.fixture
def started(apiserver: ApiServer, amqtt_broker: BrokerFactory, podman: Podman,
            tmp_path: Path) -> Iterator[list[Started]]:
    hook, dumps = tmp_path / "hook", tmp_path / "modules"
    hook.mkdir()
    dumps.mkdir()
    (hook / "sitecustomize.py").write_text(DUMP_ON_SIGNAL)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(hook), str(ROOT)]),
           "EDGEHIVE_TEST_MODULES_DIR": str(dumps)}
    edgehive = str(Path(sys.executable).with_name("edgehive"))  # the console script, as the image's ENTRYPOINT
    runs: list[Started] = []
    try:
        for way in ("edgehive run", "python -m"):
            broker = amqtt_broker()
            for component in COMPONENTS:
                tag = f"{component}-{way.split()[0]}"
                args = _argv(component, f"footprint-{way.split()[0]}", broker, apiserver, podman, tmp_path / tag)
                argv = [edgehive, "run", component, *args] if way == "edgehive run" else \
                    [sys.executable, "-m", MODULES[component], *args]
                process = ManagedProcess(tag, argv, tmp_path / f"{tag}.log", env=env).start()
                runs.append(Started(component, way, process, broker))
                with TestClient(broker.host, broker.port) as watcher:
                    watcher.subscribe(topics.status(component))
                    wait_until(partial(status_up, watcher, process.pid), timeout=60,
                               what=f"{component} ({way}) up", alive=process)
        yield runs
    finally:
        for run in runs:
            run.process.stop()


def test_edgehive_run_costs_no_more_than_python_m_at_steady_state(started: list[Started], tmp_path: Path) -> None:
    samples: dict[int, list[int]] = {run.process.pid: [] for run in started}

    def sample() -> bool:
        for run in started:
            samples[run.process.pid].append(_rss_kb(run.process.pid))
        return _settled(samples)

    wait_until(sample, timeout=180, interval=1.0, what="every component's resident set steady")
    measured = {(run.component, run.way): (_rss_kb(run.process.pid),
                                           _modules(run.process.pid, tmp_path / "modules", run.process))
                for run in started}

    rows = ["| component | started by | modules | RSS (MiB) |", "|---|---|---|---|"]
    rows += [f"| {component} | `{way}` | {len(modules)} | {rss / 1024:.1f} |"
             for (component, way), (rss, modules) in measured.items()]
    print("\n" + "\n".join(rows))
    for component in COMPONENTS:
        rss_cli, via_cli = measured[(component, "edgehive run")]
        rss_m, via_python_m = measured[(component, "python -m")]
        assert via_cli - LAUNCHER <= via_python_m, (component, sorted(via_cli - LAUNCHER - via_python_m))
        assert rss_cli <= rss_m + RSS_SLACK_KB, (component, rss_cli, rss_m)
