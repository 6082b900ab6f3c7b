"""``edgehive bench stream``: exec, logs and port-forward through the stream tunnel, against the same done
locally on the node.

On one real edge node (its components, its stream end and podman) behind the cloud stream server and the
local API server, the node advertising the stream server as its kubelet:

- ``exec_rtt_ms``: p50 and p99 of ``kubectl exec POD -- true``, each one whole kubectl run, against
  ``podman exec CONTAINER true`` on the node (``exec_local_ms``); ``exec_ratio`` is p50 over p50 and
  ``exec_added_ms`` the p50 and p99 of the per-round difference, each kubectl run less the podman run beside it
  (goal: p50 at most 300 ms).
- ``logs_mb_per_s``: ``kubectl logs`` of a log of ``log_mb`` MB against ``podman logs`` of it
  (``logs_ratio``, goal at least 0.5).
- ``portforward_mb_per_s``: an HTTP download of ``transfer_mb`` MB from the pod through ``kubectl
  port-forward`` against the same download straight from the pod's address (``portforward_ratio``, goal at
  least 0.5).

- ``link``: the same download through port-forward, and the same ``kubectl logs``, with the bridge's link
  to the cloud broker limited to ``link_mbit`` Mbit/s (``edgehive.bench.shapedlink``), against the download
  straight from the pod across that link (``link.direct_mb_per_s``): how much of a real edge link each uses.
  Loopback's GB/s, which the figures above compare with, is no link an edge node has.

- ``delivery_per_s``: ConfigMaps a pod on the node uses, created one after another, to their commit in the
  node's store (as ``bench cloud`` measures it), with the link quiet and then while a ``transfer_mb`` MB
  ``kubectl cp`` from the node runs (``delivery_during_cp_per_s``); ``delivery_ratio`` is the second over the
  first (goal: at least 0.9, resource delivery does not wait behind streams).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
import urllib.request
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from edgehive.bench.harness import (
    BenchError,
    CommitAcks,
    consumer_pod,
    percentiles,
    progress_printer,
    wait_until,
)
from edgehive.bench.shapedlink import ShapedLink, shaped_link
from edgehive.bench.system import IMAGE, NAMESPACE, NODE, Podman, start_system

MB = 1024 * 1024
LINE = "x" * 99  # and a newline: 100-byte lines


@dataclass(frozen=True)
class StreamReport:
    rounds: int
    exec_rtt_ms: dict[str, float]
    exec_local_ms: dict[str, float]
    exec_ratio: float
    exec_added_ms: dict[str, float]
    log_mb: int
    logs_mb_per_s: float
    logs_local_mb_per_s: float
    logs_ratio: float
    transfer_mb: int
    portforward_mb_per_s: float
    direct_mb_per_s: float
    portforward_ratio: float
    delivery_objects: int
    delivery_per_s: float
    delivery_during_cp_per_s: float
    delivery_ratio: float
    cp_s: float
    link: dict[str, float] | None
    load_average: tuple[float, float]


def _pod(name: str, command: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"nodeName": NODE, "terminationGracePeriodSeconds": 1, "containers": [
                {"name": "main", "image": IMAGE, "imagePullPolicy": "IfNotPresent", "command": ["sh", "-c", command]}]}}


def _timed(argv: list[str], env: dict[str, str] | None = None) -> tuple[float, bytes]:
    start = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, timeout=600, check=False, env=env)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise BenchError(f"{' '.join(argv[:6])}... failed: {done.stderr.decode(errors='replace')[-500:]}")
    return elapsed, done.stdout


def _container_id(podman: Podman, pod: str) -> str:
    found = podman.run("ps", "-q", "--no-trunc", "--filter", "label=io.edgehive.pod=" + pod,
                       "--filter", "label=io.edgehive.container=main")
    ids = found.stdout.split()
    if not ids:
        raise BenchError(f"no container of pod {pod} in podman")
    return ids[0]


def _download(url: str) -> tuple[float, int]:
    start = time.perf_counter()
    with urllib.request.urlopen(url, timeout=600) as response:
        size = 0
        while chunk := response.read(MB):
            size += len(chunk)
    return time.perf_counter() - start, size


def bench_stream(rounds: int = 20, log_mb: int = 50, transfer_mb: int = 50, broker: str = "amqtt",
                 progress: bool = True, delivery_objects: int = 200, link_mbit: float = 100.0) -> StreamReport:
    """``link_mbit`` 0: no shaped link (it needs root, ip, tc and iptables)."""
    if link_mbit < 0:
        raise BenchError(f"--link-mbit must be 0 (no shaped link) or more, not {link_mbit:g}")
    say = progress_printer("stream", progress)
    load_before = os.getloadavg()[0]
    with ExitStack() as stack:
        link = stack.enter_context(shaped_link()) if link_mbit > 0 else None
        system = start_system(stack, broker, say, stream=True, link=link)
        kube = system.kube
        assert system.kubeconfig is not None
        kubectl = ["kubectl", "--kubeconfig", str(system.kubeconfig), "-n", NAMESPACE]
        log_lines = log_mb * MB // 100
        pods = {"shell": "sleep 3600",
                "logger": f"yes {LINE} | head -n {log_lines}; echo DONE; sleep 3600",
                "web": f"mkdir -p /www && head -c {transfer_mb * MB} /dev/zero > /www/big && httpd -f -p 80 -h /www"}
        for name, command in pods.items():
            kube.core.create_namespaced_pod(NAMESPACE, _pod(name, command))
        acks = CommitAcks(system.cloud_url, NODE)
        stack.callback(acks.close)
        kube.core.create_namespaced_pod(NAMESPACE, consumer_pod(NODE, [f"{phase}-{i}" for phase in ("quiet", "busy")
                                                                       for i in range(delivery_objects)], IMAGE))
        wait_until(lambda: all(_running(kube.get_pod(NAMESPACE, name)) for name in [*pods, "consumer"]), 120,
                   "the pods Running", say=say, poll=0.5)

        say(f"exec: {rounds} x kubectl exec shell -- true, and podman exec")
        shell = _container_id(system.podman, "shell")
        remote, local = [], []
        for _ in range(rounds):
            remote.append(int(_timed([*kubectl, "exec", "shell", "--", "true"])[0] * 1e9))
            local.append(int(_timed([system.podman.binary, *system.podman.flags, "exec", shell, "true"])[0] * 1e9))
        exec_rtt, exec_local = percentiles(remote), percentiles(local)

        say(f"logs: a log of {log_mb} MB through kubectl logs, and podman logs")
        wait_until(lambda: _last_line(kubectl, "logger") == b"DONE", 300, "the logger's whole log written", say=say,
                   poll=1.0)
        remote_s, remote_log = _timed([*kubectl, "logs", "logger"])
        logger = _container_id(system.podman, "logger")
        local_s, local_log = _timed([system.podman.binary, *system.podman.flags, "logs", logger])
        if len(remote_log) != len(local_log):
            raise BenchError(f"kubectl logs gave {len(remote_log)} bytes, podman logs {len(local_log)}")

        say(f"port-forward: {transfer_mb} MB over HTTP through kubectl port-forward, and straight from the pod")
        address = ((kube.get_pod(NAMESPACE, "web") or {}).get("status") or {}).get("podIP")
        if not address:
            raise BenchError("pod web has no podIP in its status")
        wait_until(lambda: _serving(f"http://{address}/big"), 120, "the pod's file written and served", say=say,
                   poll=0.5)
        direct_s, direct_size = _download(f"http://{address}/big")
        local_port = _port_forward(stack, kubectl, Path(system.work) / "port-forward.log")
        forward_s, forward_size = _download(f"http://127.0.0.1:{local_port}/big")
        if forward_size != direct_size:
            raise BenchError(f"port-forward gave {forward_size} bytes, the pod {direct_size}")
        link_figures = None
        if link is not None:
            say(f"link: port-forward and logs with the link limited to {link_mbit:g} Mbit/s, and the pod across it")
            link_figures = _over_link(link, link_mbit, address, local_port, kubectl, len(local_log))

        say(f"delivery: {delivery_objects} ConfigMaps to the node, quiet, then during a {transfer_mb} MB kubectl cp")
        quiet_rate = acks.delivery_rate(kube.core, NAMESPACE, [f"quiet-{i}" for i in range(delivery_objects)], 120)
        copy = Path(system.work) / "copied"
        started = time.perf_counter()
        cp = subprocess.Popen([*kubectl, "cp", "web:/www/big", str(copy)], stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE)
        stack.callback(cp.kill)
        # Measure only once bytes are flowing: a cp still setting up its exec would flatter the rate.
        wait_until(lambda: copy.exists() and copy.stat().st_size > 0, 60, "kubectl cp's first bytes", say=say,
                   poll=0.01)
        busy_rate = acks.delivery_rate(kube.core, NAMESPACE, [f"busy-{i}" for i in range(delivery_objects)], 120)
        if cp.poll() is not None:
            raise BenchError(f"kubectl cp ended before the delivery did; use a larger --transfer-mb than {transfer_mb}")
        _out, err = cp.communicate(timeout=600)
        cp_s = time.perf_counter() - started
        if cp.returncode != 0 or copy.stat().st_size != transfer_mb * MB:
            raise BenchError(f"kubectl cp failed ({cp.returncode}): {err.decode(errors='replace')[-300:]}")
    mb = len(local_log) / MB
    added = [r - lo for r, lo in zip(remote, local, strict=True)]
    return StreamReport(
        rounds=rounds, exec_rtt_ms=exec_rtt, exec_local_ms=exec_local,
        exec_ratio=round(exec_rtt["p50"] / exec_local["p50"], 2),
        exec_added_ms={q: round(v, 1) for q, v in percentiles(added).items()},
        log_mb=log_mb, logs_mb_per_s=round(mb / remote_s, 1), logs_local_mb_per_s=round(mb / local_s, 1),
        logs_ratio=round(local_s / remote_s, 2), transfer_mb=transfer_mb,
        portforward_mb_per_s=round(forward_size / MB / forward_s, 1),
        direct_mb_per_s=round(direct_size / MB / direct_s, 1), portforward_ratio=round(direct_s / forward_s, 2),
        delivery_objects=delivery_objects, delivery_per_s=round(quiet_rate, 1),
        delivery_during_cp_per_s=round(busy_rate, 1), delivery_ratio=round(busy_rate / quiet_rate, 2),
        cp_s=round(cp_s, 2), link=link_figures,
        load_average=(load_before, os.getloadavg()[0]))


def _over_link(link: ShapedLink, mbit: float, pod_address: str, forward_port: int, kubectl: list[str],
               log_size: int) -> dict[str, float]:
    """The shaped-link figures; the link is unshaped again after, whatever happens."""
    across = link.forward(pod_address, 80)
    link.shape(mbit)
    try:
        direct_s, direct_size = _download(f"http://{link.address}:{across}/big")
        forward_s, forward_size = _download(f"http://127.0.0.1:{forward_port}/big")
        logs_s, logs = _timed([*kubectl, "logs", "logger"])
    finally:
        link.unshape()
    if forward_size != direct_size or len(logs) != log_size:
        raise BenchError(f"over the link, port-forward gave {forward_size} bytes of {direct_size} and kubectl logs "
                         f"{len(logs)} of {log_size}")
    direct = direct_size / MB / direct_s
    return {"mbit": mbit, "direct_mb_per_s": round(direct, 2),
            "portforward_mb_per_s": round(forward_size / MB / forward_s, 2),
            "portforward_ratio": round(direct_s / forward_s, 2),
            "logs_mb_per_s": round(log_size / MB / logs_s, 2),
            "logs_ratio": round(log_size / MB / logs_s / direct, 2)}


def _running(pod: dict[str, Any] | None) -> bool:
    status = (pod or {}).get("status") or {}
    statuses = status.get("containerStatuses") or []
    return bool(status.get("phase") == "Running" and statuses
                and all("running" in (s.get("state") or {}) for s in statuses))


def _last_line(kubectl: list[str], pod: str) -> bytes:
    done = subprocess.run([*kubectl, "logs", pod, "--tail=1"], capture_output=True, timeout=60, check=False)
    return done.stdout.strip()


def _serving(url: str) -> bool:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=5) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def _port_forward(stack: ExitStack, kubectl: list[str], log: Path) -> int:
    """A running ``kubectl port-forward pod/web :80`` (stopped with ``stack``): its local port."""
    with log.open("wb") as out:
        forward = subprocess.Popen([*kubectl, "port-forward", "pod/web", ":80"], stdout=out,
                                   stderr=subprocess.STDOUT)

    def stop() -> None:
        forward.terminate()
        forward.wait(timeout=30)

    stack.callback(stop)
    found: list[int] = []

    def listening() -> bool:
        match = re.search(rb"Forwarding from 127\.0\.0\.1:(\d+)", log.read_bytes())
        if match:
            found.append(int(match.group(1)))
        return bool(match)

    wait_until(listening, 60, "kubectl port-forward to listen", poll=0.2)
    return found[0]


def print_report(report: StreamReport, as_json: bool) -> None:
    if as_json:
        print(json.dumps(asdict(report)))
        return
    print(f"stream benchmark, one edge node through the stream tunnel ({report.rounds} execs)")
    print(f"  kubectl exec -- true         p50 {report.exec_rtt_ms['p50']:.0f} ms, p99 {report.exec_rtt_ms['p99']:.0f} "
          f"ms; podman exec p50 {report.exec_local_ms['p50']:.0f} ms, p99 {report.exec_local_ms['p99']:.0f} ms")
    print(f"  exec added                   p50 {report.exec_added_ms['p50']:.0f} ms, p99 "
          f"{report.exec_added_ms['p99']:.0f} ms (goal p50 <= 300), ratio {report.exec_ratio:.2f}")
    print(f"  kubectl logs ({report.log_mb} MB)        {report.logs_mb_per_s:.1f} MB/s; podman logs "
          f"{report.logs_local_mb_per_s:.1f} MB/s; ratio {report.logs_ratio:.2f} (goal >= 0.5)")
    print(f"  port-forward ({report.transfer_mb} MB)       {report.portforward_mb_per_s:.1f} MB/s; direct "
          f"{report.direct_mb_per_s:.1f} MB/s; ratio {report.portforward_ratio:.2f} (goal >= 0.5)")
    if report.link is not None:
        link = report.link
        print(f"  over a {link['mbit']:g} Mbit/s link     pod direct {link['direct_mb_per_s']:.1f} MB/s; port-forward "
              f"{link['portforward_mb_per_s']:.1f} MB/s, ratio {link['portforward_ratio']:.2f}; kubectl logs "
              f"{link['logs_mb_per_s']:.1f} MB/s, ratio {link['logs_ratio']:.2f}")
    print(f"  delivery to the node         {report.delivery_per_s:.0f}/s quiet, "
          f"{report.delivery_during_cp_per_s:.0f}/s during a {report.transfer_mb} MB kubectl cp "
          f"({report.cp_s:.1f} s); ratio {report.delivery_ratio:.2f} (goal >= 0.9)")
    print(f"  load average (1 min)         {report.load_average[0]:.1f} at the start, {report.load_average[1]:.1f} "
          "at the end")
