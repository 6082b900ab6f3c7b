"""``edgehive bench footprint``: the memory of one idle edge node, as proportional set size (PSS).

It runs the real thing, ``python -m edgehive up`` in a temporary state directory on
free ports, puts ``pods`` Pods on ``edge-1`` through the API server, waits until they
run and the edge processes' memory stops moving, then reads each edge process's
``/proc/PID/smaps_rollup``. PSS charges a page shared by N processes 1/N to each, so
the sum over processes is the memory they take together, which RSS (counting shared
pages once per process) overstates.

PSS depends on who else maps the same files: on this machine the cloud side's
interpreters and anyone else's ``python3`` share libpython's pages with the edge and
lower its PSS. So the report also counts the distinct physical pages the seven edge
processes map (from ``/proc/PID/pagemap``, root only): what their PSS sum would be on
a machine that runs nothing else. The baseline, a bare interpreter measured in the
same run beside the same neighbours, says how much of each process is Python itself.

Podman's service, conmon and the containers are not edge-python processes: the
service's PSS is reported on its own and is not in the edge total.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from contextlib import ExitStack, suppress
from dataclasses import asdict, dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from cloud.kube import Kube
from edge.podlabels import NAMESPACE_LABEL  # a leaf: not EdgeD's modules
from edgehive.bench.harness import BenchError, bench_workdir, free_port, progress_printer, wait_until
from edgehive.bench.procfs import Memory, cmdline, descendants, read_memory, start_time, stat_fields
from edgehive.deathsig import die_with_parent
from edgehive.localcluster import APISERVER_BIN
from edgehive.stack import BRIDGES, DEFAULT_EDGE_BROKER, StackError, default_bridge, resolve_bridge

NODE = "edge-1"
IMAGE = "localhost/busybox:latest"
GOAL_MB = 70.0
"""Issue 19's goal: an edge node in the memory of KubeEdge's edgecore (about 70 MB)."""
EDGE_PROCESSES = ("edge-broker", "bridge", "edgehub", "metamanager", "edged", "devicetwin", "eventbus")
"""What ``edgehive up`` runs for the node in Python, in its order; podman's service is apart. With ``--bridge native``
there is no bridge process: the edge mosquitto carries the link (``expected``)."""
EDGE_BROKER_DIR = "edge-broker"
"""Where ``edgehive up`` writes a mosquitto edge broker's files, in its state directory (edgehive/stack.py)."""
FORKSERVER = "forkserver"
"""The parent the edge components are forked from (``--edge-start fork``, the default): counted with them, since
the import-time pages they share with it are charged partly to it."""
NEWER_PROCESSES = ("dmi", "edgestream")
"""Edge processes that came after the seven (mappers' DMI, kubectl logs/exec): not in the issue's total, reported
beside it, and in the whole node's figure."""
EDGE_COMPONENTS = {f"edge.{name}": name for name in ("edgehub", "metamanager", "edged", "devicetwin", "eventbus",
                                                      "dmi")} | {"edge.stream": "edgestream"}
SETTLE_WINDOW = 5
"""Consecutive one-second samples whose total RSS must agree before the node counts as idle."""
SETTLE_TOLERANCE_KB = 1024
SETTLE_TIMEOUT_S = 90.0
_MAPPING = re.compile(r"^([0-9a-f]+)-([0-9a-f]+) ")
_PFN_MASK = (1 << 55) - 1
_PRESENT = 1 << 63


@dataclass
class FootprintReport:
    pods: int
    pss_mb: dict[str, float]
    rss_mb: dict[str, float]
    anon_pss_mb: dict[str, float]
    edge_pss_mb: float
    edge_rss_mb: float
    edge_anon_pss_mb: float
    edge_distinct_mb: float
    newer_pss_mb: dict[str, float]
    node_pss_mb: float
    """Every edge Python process of the node: the counted ones and the newer ones."""
    python_baseline_pss_mb: float
    python_baseline_rss_mb: float
    baseline_ratio: float
    podman_pss_mb: float
    settled: bool
    settle_s: float
    ready_s: float
    pods_running_s: float
    duration_s: float
    edge_start: str = "fork"
    edge_broker: str = DEFAULT_EDGE_BROKER
    bridge: str = default_bridge(DEFAULT_EDGE_BROKER)
    goal_mb: float = GOAL_MB


# -- pure parts (unit-tested) -------------------------------------------------------------------------------------


def expected(bridge: str) -> tuple[str, ...]:
    """The counted edge processes for a node whose link is ``bridge`` (python or native: no bridge process)."""
    return tuple(name for name in EDGE_PROCESSES if not (bridge == "native" and name == "bridge"))


def _option(argv: Sequence[str], flag: str) -> str | None:
    for i, arg in enumerate(argv):
        if arg == flag and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith(flag + "="):
            return arg.split("=", 1)[1]
    return None


def classify(cmdline: Sequence[str], edge_listen: str) -> str | None:
    """The edge process a command line belongs to, ``"podman"`` for podman's service, None for anything else.

    Both brokers are ``python -m broker``; only ``--listen`` tells the node's from the cloud's.
    """
    if not cmdline:
        return None
    if Path(cmdline[0]).name == "podman":
        return "podman" if "system" in cmdline and "service" in cmdline else None
    if Path(cmdline[0]).name == "mosquitto":  # --edge-broker mosquitto: its files in the state's edge-broker/
        conf = _option(cmdline, "-c")
        return "edge-broker" if conf is not None and EDGE_BROKER_DIR in Path(conf).parts else None
    module = _option(cmdline, "-m")
    if module is None:
        return None
    if module == "broker":
        return "edge-broker" if _option(cmdline, "--listen") == edge_listen else None
    if module == "broker.bridge":
        return "bridge"
    if module == "edgehive.forkserver":
        return FORKSERVER
    return EDGE_COMPONENTS.get(module)


def settled(samples: Sequence[int], window: int = SETTLE_WINDOW, tolerance_kb: int = SETTLE_TOLERANCE_KB) -> bool:
    """Idle means the last ``window`` totals lie within the tolerance of each other (1 MB or 1 %)."""
    if len(samples) < window:
        return False
    last = samples[-window:]
    return max(last) - min(last) <= max(tolerance_kb, max(last) // 100)


# -- /proc ----------------------------------------------------------------------------------------------------------


def _mb(kb: float) -> float:
    return round(kb / 1024, 1)


def _resident_pages(pid: int) -> set[int]:
    """Physical frame numbers of the process's resident pages (needs root; otherwise the kernel hides them)."""
    ranges: list[tuple[int, int]] = []
    current: tuple[int, int] | None = None
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        mapping = _MAPPING.match(line)
        if mapping:
            current = (int(mapping.group(1), 16), int(mapping.group(2), 16))
        elif line.startswith("Rss:") and current is not None and int(line.split()[1]) > 0:
            ranges.append(current)
    page = os.sysconf("SC_PAGE_SIZE")
    frames: set[int] = set()
    with Path(f"/proc/{pid}/pagemap").open("rb") as pagemap:
        for start, end in ranges:
            pagemap.seek(start // page * 8)
            for (entry,) in struct.iter_unpack("<Q", pagemap.read((end - start) // page * 8)):
                if entry & _PRESENT:
                    frames.add(entry & _PFN_MASK)
    if frames == {0}:
        raise BenchError("bench footprint: /proc/PID/pagemap hides frame numbers; run it as root")
    return frames


def _distinct_kb(pids: Iterable[int]) -> int:
    frames: set[int] = set()
    for pid in pids:
        try:
            frames |= _resident_pages(pid)
        except OSError as exc:
            raise BenchError(f"bench footprint: process {pid} went away while being measured ({exc})") from exc
    return len(frames) * os.sysconf("SC_PAGE_SIZE") // 1024


# -- the run --------------------------------------------------------------------------------------------------------


def _port_in_use(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def _wait(probe: Callable[[], Any], timeout: float, what: str, up: _Up) -> None:
    """Until ``probe()`` is true while ``edgehive up`` runs; a probe that raises is not ready yet (the API server
    not up, a file half-written)."""

    def ready() -> bool:
        if up.proc.poll() is not None:
            return True
        try:
            return bool(probe())
        except Exception:
            return False

    try:
        wait_until(ready, timeout, what, poll=0.2)
    except BenchError as exc:
        raise BenchError(f"bench footprint: {exc}; see {up.log} (EDGEHIVE_BENCH_KEEP=1 keeps it)") from None
    if up.proc.poll() is not None:
        raise BenchError(f"bench footprint: edgehive up exited with status {up.proc.returncode} while waiting "
                         f"for {what}; see {up.log} (EDGEHIVE_BENCH_KEEP=1 keeps it)")


def _all_healthy(state: Path) -> bool:
    rows = json.loads((state / "status.json").read_text())["children"]
    return bool(rows) and all(row["healthy"] for row in rows)


def _podman_pods(podman: str, namespace: str) -> list[str]:
    out = subprocess.run([podman, "pod", "ps", "-q", "--filter", f"label={NAMESPACE_LABEL}={namespace}"],
                         capture_output=True, text=True, check=False).stdout
    return out.split()


def _pod_manifest(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"nodeName": NODE, "terminationGracePeriodSeconds": 1, "containers": [
                {"name": "main", "image": IMAGE, "imagePullPolicy": "Never", "command": ["sleep", "3600"]}]}}


def _all_running(core: Any, namespace: str, count: int) -> bool:
    pods = core.list_namespaced_pod(namespace).items
    return len(pods) == count and all(
        p.status.phase == "Running" and p.status.container_statuses
        and all(s.state.running for s in p.status.container_statuses) for p in pods)


class _Up:
    """``python -m edgehive up`` as a child, and the processes it started, so that none outlives the bench."""

    def __init__(self, state: Path, ports: dict[str, int], edge_start: str = "fork",
                 edge_broker: str = DEFAULT_EDGE_BROKER, bridge: str = BRIDGES[0]) -> None:
        self.state = state
        self.log = state.parent / "up.log"
        self.edge_listen = f"127.0.0.1:{ports['edge']}"
        argv = [sys.executable, "-m", "edgehive", "up", "--state-dir", str(state),
                "--cloud-listen", f"127.0.0.1:{ports['cloud']}", "--edge-listen", self.edge_listen,
                "--apiserver-port", str(ports["apiserver"]), "--etcd-port", str(ports["etcd"]),
                "--edge-start", edge_start, "--edge-broker", edge_broker, "--bridge", bridge]
        self.bridge = bridge
        with self.log.open("wb") as out:
            # If the bench is killed outright, the kernel stops edgehive up, which stops its children.
            self.proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         preexec_fn=die_with_parent)  # noqa: PLW1509 - only prctl
        self.seen: dict[int, str] = {}  # every descendant we ever saw, pid -> start time

    def processes(self) -> dict[str, list[int]]:
        """Descendants by edge-process name (``podman`` included); also remembers them for the final check."""
        found: dict[str, list[int]] = {}
        for pid in descendants(self.proc.pid):
            try:
                self.seen.setdefault(pid, start_time(pid))
                name = classify(cmdline(pid), self.edge_listen)
            except (OSError, ValueError):
                continue
            if name is not None:
                found.setdefault(name, []).append(pid)
        return found

    def stop(self) -> list[int]:
        """SIGINT (Ctrl-C) as a user would, then harder; returns the PIDs of descendants that survived it."""
        self.processes()
        if self.proc.poll() is None:
            for sig, grace in ((signal.SIGINT, 60.0), (signal.SIGTERM, 15.0), (signal.SIGKILL, 15.0)):
                self.proc.send_signal(sig)
                try:
                    self.proc.wait(timeout=grace)
                    break
                except subprocess.TimeoutExpired:
                    continue
        deadline = time.monotonic() + 10
        while (left := self._alive()) and time.monotonic() < deadline:
            time.sleep(0.2)
        for pid in left:
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        return left

    def _alive(self) -> list[int]:
        alive = []
        for pid, started in self.seen.items():
            try:
                fields = stat_fields(Path(f"/proc/{pid}/stat").read_text())
            except OSError:
                continue
            if fields[19] == started and fields[0] != "Z":  # a zombie is gone, only not yet reaped
                alive.append(pid)
        return alive


def _edge_pids(up: _Up) -> dict[str, int]:
    found = up.processes()
    missing = [name for name in (*expected(up.bridge), "podman") if len(found.get(name, [])) != 1]
    if missing:
        raise BenchError(f"bench footprint: expected one process each for {', '.join(missing)} under edgehive up, "
                         f"found {found}; see {up.log}")
    if up.bridge == "native" and "bridge" in found:
        raise BenchError(f"bench footprint: a bridge process runs under edgehive up --bridge native: {found}; "
                         f"see {up.log}")
    return {name: pids[0] for name, pids in found.items()}


def counted(pids: dict[str, int]) -> list[str]:
    """The processes the edge total counts: the seven (six without a bridge process, ``--bridge native``), and the
    fork server when the node runs one."""
    return [*(n for n in EDGE_PROCESSES if n in pids), *([FORKSERVER] if FORKSERVER in pids else [])]


def _settle(pids: dict[str, int], say: Callable[[str], None]) -> tuple[bool, float]:
    say("waiting for the edge processes' memory to stop moving")
    t0 = time.monotonic()
    samples: list[int] = []
    while time.monotonic() - t0 < SETTLE_TIMEOUT_S:
        samples.append(sum(read_memory(pids[name]).rss_kb for name in counted(pids)))
        if settled(samples):
            return True, time.monotonic() - t0
        time.sleep(1.0)
    return False, time.monotonic() - t0


def _baseline() -> Memory:
    """A bare interpreter, the same binary the components run, once its memory holds still."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        samples: list[int] = []
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            samples.append(read_memory(proc.pid).rss_kb)
            if len(samples) >= 3 and samples[-1] == samples[-2] == samples[-3]:
                return read_memory(proc.pid)
            time.sleep(0.2)
        raise BenchError("bench footprint: the bare interpreter's memory did not settle within 20 s")
    finally:
        proc.kill()
        proc.wait()


def _free_ports() -> dict[str, int]:
    ports = {name: free_port() for name in ("cloud", "edge", "apiserver")}
    for _ in range(50):
        etcd = free_port()
        if not _port_in_use(etcd + 1) and etcd + 1 not in ports.values():  # etcd's peer port is the next one
            ports["etcd"] = etcd
            return ports
    raise BenchError("bench footprint: found no free pair of ports for etcd")


def _require_parts() -> str:
    """The podman binary; BenchError when a part ``edgehive up`` runs is missing."""
    podman = shutil.which("podman")
    if podman is None or shutil.which("etcd") is None or not os.access(APISERVER_BIN, os.X_OK):
        raise BenchError("bench footprint needs podman, etcd and kube-apiserver: run scripts/setup first")
    if subprocess.run([podman, "image", "exists", IMAGE], check=False).returncode != 0:
        raise BenchError(f"bench footprint needs the image {IMAGE}: run scripts/setup first")
    return podman


def _start_up(stack: ExitStack, podman: str, namespace: str, say: Callable[[str], None],
              edge_start: str = "fork", edge_broker: str = DEFAULT_EDGE_BROKER, bridge: str = BRIDGES[0]) -> _Up:
    """``edgehive up`` with every child healthy; when ``stack`` closes, it is stopped and checked to have left no
    process and no pod of ``namespace`` behind."""
    work = bench_workdir(stack, "ehfp-")
    say(f"edgehive up --edge-start {edge_start} --edge-broker {edge_broker} --bridge {bridge} in {work}")
    up = _Up(work / "state", _free_ports(), edge_start, edge_broker, bridge)

    def teardown(exc_type: type[BaseException] | None, _exc: BaseException | None,
                 _tb: TracebackType | None) -> None:
        say("stopping edgehive up")
        left = up.stop()
        stray = _podman_pods(podman, namespace)
        if stray:
            subprocess.run([podman, "pod", "rm", "--force", "--time", "0", *stray], capture_output=True,
                           check=False)
        if (left or stray) and exc_type is None:  # a failure already on its way says more
            raise BenchError(f"bench footprint: {len(left)} processes outlived edgehive up (killed) and "
                             f"{len(stray)} pods were left in podman (removed); see {up.log}")

    stack.push(teardown)
    _wait(lambda: _all_healthy(up.state), 180, "every child of edgehive up healthy", up)
    return up


def bench_footprint(pods: int = 10, progress: bool = True, edge_start: str = "fork",
                    edge_broker: str = DEFAULT_EDGE_BROKER, bridge: str | None = None) -> FootprintReport:
    """``bridge`` None: the edge broker's default, as ``edgehive up`` chooses it."""
    try:
        bridge = resolve_bridge(bridge, edge_broker)
    except StackError as exc:
        raise BenchError(f"bench footprint: {exc}") from None
    say = progress_printer("footprint", progress)
    started = time.monotonic()
    podman = _require_parts()
    namespace = f"footprint-{uuid.uuid4().hex[:6]}"
    with ExitStack() as stack:
        up = _start_up(stack, podman, namespace, say, edge_start, edge_broker, bridge)
        kubeconfig = up.state / "apiserver" / "kubeconfig"
        kube = Kube.connect(str(kubeconfig))
        stack.callback(kube.close)
        core = kube.core  # the bench is a Kubernetes client like kubectl
        _wait(lambda: any(c.type == "Ready" and c.status == "True" for c in core.read_node(NODE).status.conditions),
              90, f"{NODE} Ready", up)
        ready_s = time.monotonic() - started

        say(f"{pods} pods on {NODE} in namespace {namespace}")
        core.create_namespace({"metadata": {"name": namespace}})
        # The API server admits pods only once the controller-manager made the namespace's default ServiceAccount.
        _wait(lambda: core.read_namespaced_service_account("default", namespace), 60,
              f"the default ServiceAccount of {namespace}", up)
        t0 = time.monotonic()
        for i in range(pods):
            core.create_namespaced_pod(namespace, _pod_manifest(f"idle-{i}"))
        _wait(lambda: _all_running(core, namespace, pods), 60 + 10 * pods, f"{pods} pods Running", up)
        pods_running_s = time.monotonic() - t0

        pids = _edge_pids(up)
        is_settled, settle_s = _settle(pids, say)
        say("reading smaps_rollup and pagemap; then a bare interpreter for the baseline")
        memory = {name: read_memory(pids[name]) for name in counted(pids)}
        distinct_kb = _distinct_kb(pids[name] for name in counted(pids))
        newer = {name: read_memory(pids[name]) for name in NEWER_PROCESSES if name in pids}
        podman_memory = read_memory(pids["podman"])
        baseline = _baseline()

        say("deleting the pods")
        for i in range(pods):
            core.delete_namespaced_pod(f"idle-{i}", namespace)
        _wait(lambda: not _podman_pods(podman, namespace), 120, "the pods gone from podman", up)
    edge_pss = sum(m.pss_kb for m in memory.values())
    return FootprintReport(
        pods=pods,
        pss_mb={name: _mb(m.pss_kb) for name, m in memory.items()},
        rss_mb={name: _mb(m.rss_kb) for name, m in memory.items()},
        anon_pss_mb={name: _mb(m.anon_pss_kb) for name, m in memory.items()},
        edge_pss_mb=_mb(edge_pss), edge_rss_mb=_mb(sum(m.rss_kb for m in memory.values())),
        edge_anon_pss_mb=_mb(sum(m.anon_pss_kb for m in memory.values())), edge_distinct_mb=_mb(distinct_kb),
        newer_pss_mb={name: _mb(m.pss_kb) for name, m in newer.items()},
        node_pss_mb=_mb(edge_pss + sum(m.pss_kb for m in newer.values())),
        python_baseline_pss_mb=_mb(baseline.pss_kb), python_baseline_rss_mb=_mb(baseline.rss_kb),
        baseline_ratio=round(edge_pss / (len(memory) * baseline.pss_kb), 2),
        podman_pss_mb=_mb(podman_memory.pss_kb), settled=is_settled, settle_s=round(settle_s, 1),
        ready_s=round(ready_s, 1), pods_running_s=round(pods_running_s, 1),
        duration_s=round(time.monotonic() - started, 1), edge_start=edge_start, edge_broker=edge_broker,
        bridge=bridge,
    )


def print_report(report: FootprintReport, as_json: bool) -> None:
    if as_json:
        print(json.dumps({"footprint": asdict(report)}))
        return
    idle = f"idle after {report.settle_s:.0f} s" if report.settled else \
        f"NOT idle after {report.settle_s:.0f} s (RSS still moving)"
    print(f"edge footprint: {NODE} with {report.pods} pods Running, {idle}; run took {report.duration_s:.0f} s"
          f" (--edge-broker {report.edge_broker} --bridge {report.bridge})")
    print(f"  {'process':<14}{'PSS MB':>8}{'anon PSS':>10}{'RSS MB':>8}")
    for name in report.pss_mb:
        print(f"  {name:<14}{report.pss_mb[name]:>8.1f}{report.anon_pss_mb[name]:>10.1f}{report.rss_mb[name]:>8.1f}")
    print(f"  {'edge total':<14}{report.edge_pss_mb:>8.1f}{report.edge_anon_pss_mb:>10.1f}{report.edge_rss_mb:>8.1f}"
          f"   (goal PSS <= {report.goal_mb:.0f} MB, KubeEdge's edgecore)")
    for name, pss in report.newer_pss_mb.items():
        print(f"  {name:<14}{pss:>8.1f}   (newer than the seven: not in the edge total)")
    print(f"  {'whole node':<14}{report.node_pss_mb:>8.1f}")
    print(f"  distinct pages of the {len(report.pss_mb)} edge processes {report.edge_distinct_mb:.1f} MB "
          "(their PSS if nothing else on the machine shared them)")
    print(f"  bare python interpreter: PSS {report.python_baseline_pss_mb:.1f} MB, RSS "
          f"{report.python_baseline_rss_mb:.1f} MB; edge PSS / ({len(report.pss_mb)} x baseline) = "
          f"{report.baseline_ratio:.2f}")
    print(f"  podman service (not in the total): PSS {report.podman_pss_mb:.1f} MB")
