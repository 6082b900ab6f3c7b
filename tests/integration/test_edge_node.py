"""The edge node on real podman and real brokers: pods from envelopes, status, and life without the cloud."""

from __future__ import annotations

import base64
import time
import urllib.request
from functools import partial
from typing import Any

from podman import PodmanClient

from edge.metamanager.store import MetaStore
from schemas.envelope import Op
from schemas.resource import ResourceKey
from tests.fixtures.processes import free_port, wait_until
from tests.support.cloud import FakeCloud
from tests.support.edge_node import EdgeNode, Link
from tests.support.pods import NS, exec_in, pod, pod_exists


def configmap(name: str, data: dict[str, str], rv: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": NS,
                                                                   "uid": f"cm-{name}", "resourceVersion": rv},
            "data": data}


def secret(name: str, data: dict[str, str], rv: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": NS, "uid": f"s-{name}",
                                                               "resourceVersion": rv},
            "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}}


def running(cloud: FakeCloud, name: str) -> dict[str, Any] | None:
    status = cloud.pod_status(NS, name)
    return status if status is not None and status["phase"] == "Running" and all(
        "running" in c["state"] for c in status["containerStatuses"]) else None


def test_pod_with_configmap_volume_and_secret_env(edge_node: tuple[EdgeNode, Link, FakeCloud]) -> None:
    node, _link, cloud = edge_node
    ack = cloud.send_and_wait(cloud.envelope(Op.INSERT, ResourceKey(NS, "configmap", "app-config"),
                                             configmap("app-config", {"mode": "fast"}, "10"), rv="10"))
    assert ack.op == Op.RESPONSE
    assert ack.body == {"outcome": "applied"}
    cloud.send_and_wait(cloud.envelope(Op.INSERT, ResourceKey(NS, "secret", "app-secret"),
                                       secret("app-secret", {"token": "s3cr3t"}, "11"), rv="11"))
    spec = pod("app", "sleep 3600", volumes=[{"name": "cfg", "configMap": {"name": "app-config"}}],
               container={"volumeMounts": [{"name": "cfg", "mountPath": "/etc/app"}],
                          "env": [{"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "app-secret",
                                                                                   "key": "token"}}}]})
    t0 = time.monotonic()
    cloud.send_and_wait(cloud.envelope(Op.INSERT, ResourceKey(NS, "pod", "app"), spec, rv="12"))
    status = wait_until(lambda: running(cloud, "app"), timeout=30, what="pod app Running")
    started_in = time.monotonic() - t0
    assert status["podIP"]
    assert exec_in(node, "app", ["cat", "/etc/app/mode"]) == (0, "fast")
    assert exec_in(node, "app", ["sh", "-c", "echo -n $TOKEN"]) == (0, "s3cr3t")

    cloud.send_and_wait(cloud.envelope(Op.UPDATE, ResourceKey(NS, "configmap", "app-config"),
                                       configmap("app-config", {"mode": "safe"}, "20"), rv="20"))
    wait_until(lambda: exec_in(node, "app", ["cat", "/etc/app/mode"]) == (0, "safe"), timeout=15,
               what="the ConfigMap file to change in the container")
    print(f"\npod running {started_in:.2f} s after its envelope was acknowledged-sent")


def send_config_and_pod(cloud: FakeCloud, name: str, command: str = "sleep 3600") -> dict[str, Any]:
    cloud.send_and_wait(cloud.envelope(Op.INSERT, ResourceKey(NS, "configmap", f"{name}-cfg"),
                                       configmap(f"{name}-cfg", {"greeting": "hello"}, "5"), rv="5"))
    cloud.send_and_wait(cloud.envelope(Op.INSERT, ResourceKey(NS, "secret", f"{name}-sec"),
                                       secret(f"{name}-sec", {"pw": "hunter2"}, "6"), rv="6"))
    spec = pod(name, command, volumes=[{"name": "cfg", "configMap": {"name": f"{name}-cfg"}}],
               container={"volumeMounts": [{"name": "cfg", "mountPath": "/cfg"}],
                          "env": [{"name": "PW", "valueFrom": {"secretKeyRef": {"name": f"{name}-sec",
                                                                                "key": "pw"}}}]})
    cloud.send_and_wait(cloud.envelope(Op.INSERT, ResourceKey(NS, "pod", name), spec, rv="7"))
    return spec


def restart_count(cloud: FakeCloud, name: str) -> int:
    status = cloud.pod_status(NS, name)
    return int(status["containerStatuses"][0]["restartCount"]) if status and status["containerStatuses"] else -1


def test_offline_restart_of_a_killed_container_and_outbox_drain(
        edge_node: tuple[EdgeNode, Link, FakeCloud]) -> None:
    node, link, cloud = edge_node
    send_config_and_pod(cloud, "worker")
    wait_until(lambda: running(cloud, "worker"), timeout=30, what="worker Running")
    link.down()
    before = len(cloud.upstream("podstatus"))
    # Kill the container's main process from inside: EdgeD must restart it, with no cloud.
    for expected in (1, 2):
        code, _ = exec_in(node, "worker", ["sh", "-c", "kill -9 $(pidof sleep)"])
        assert code in (0, 137)
        wait_until(partial(_restarted_locally, node, "worker", expected), timeout=30,
                   what=f"restart {expected} while offline")
    assert len(cloud.upstream("podstatus")) == before  # nothing went up meanwhile
    link.up()
    final = wait_until(lambda: (s := cloud.pod_status(NS, "worker")) and s["containerStatuses"][0]["restartCount"] == 2
                       and "running" in s["containerStatuses"][0]["state"] and s, timeout=30,
                       what="the last status after the link returned")
    assert final["phase"] == "Running"
    arrived = len(cloud.upstream("podstatus")) - before
    # Statuses while offline coalesced: a handful at most, not one per change.
    assert 1 <= arrived <= 3, arrived


def _restarted_locally(node: EdgeNode, pod_name: str, attempt: int) -> bool:
    with PodmanClient(base_url=node.podman.base_url) as client:
        return any(c.attrs["Labels"].get("io.edgehive.attempt") == str(attempt) and c.attrs.get("State") == "running"
                   for c in client.containers.list(filters={"label": f"io.edgehive.pod={pod_name}"}))


def test_reboot_with_the_link_down_restores_pods_from_sqlite(edge_node: tuple[EdgeNode, Link, FakeCloud]) -> None:
    node, link, cloud = edge_node
    for name in ("alpha", "beta"):
        send_config_and_pod(cloud, name)
    for name in ("alpha", "beta"):
        wait_until(partial(running, cloud, name), timeout=30, what=f"{name} Running")
    link.down()
    node.stop_all()
    with PodmanClient(base_url=node.podman.base_url) as client:
        for p in client.pods.list():
            p.stop(timeout=0)  # killed, as a reboot does (and not 10 s per container waiting on SIGTERM)
            p.remove(force=True)
        assert not client.containers.list(all=True)
    t0 = time.monotonic()
    node.start_all()
    for name in ("alpha", "beta"):
        wait_until(partial(_restarted_locally, node, name, 0), timeout=30, what=f"{name} running again")
    restored = time.monotonic() - t0
    assert exec_in(node, "alpha", ["cat", "/cfg/greeting"]) == (0, "hello")
    assert exec_in(node, "beta", ["sh", "-c", "echo -n $PW"]) == (0, "hunter2")
    assert restored < 10, f"restore took {restored:.1f} s"
    print(f"\nboth pods running {restored:.1f} s after the edge processes were started again, offline")


def test_duplicates_and_reordering_leave_the_right_state(edge_node: tuple[EdgeNode, Link, FakeCloud]) -> None:
    node, _link, cloud = edge_node
    key = ResourceKey(NS, "configmap", "order")
    newer = cloud.envelope(Op.UPDATE, key, configmap("order", {"v": "new"}, "30"), rv="30")
    older = cloud.envelope(Op.UPDATE, key, configmap("order", {"v": "old"}, "29"), rv="29")
    assert cloud.send_and_wait(newer).body == {"outcome": "applied"}
    assert cloud.send_and_wait(newer).body == {"outcome": "stale"}  # the same message again
    assert cloud.send_and_wait(older).body == {"outcome": "stale"}  # overtaken on the way
    spec = pod("reader", "sleep 3600", volumes=[{"name": "c", "configMap": {"name": "order"}}],
               container={"volumeMounts": [{"name": "c", "mountPath": "/c"}]})
    cloud.send_and_wait(cloud.envelope(Op.INSERT, ResourceKey(NS, "pod", "reader"), spec, rv="31"))
    first = cloud.envelope(Op.INSERT, ResourceKey(NS, "pod", "reader"), spec, rv="31")
    assert cloud.send_and_wait(first).body == {"outcome": "stale"}
    wait_until(lambda: running(cloud, "reader"), timeout=30, what="reader Running")
    assert exec_in(node, "reader", ["cat", "/c/v"]) == (0, "new")
    # A delete of a pod under another UID (an older incarnation) leaves the current one alone.
    stale_delete = cloud.envelope(Op.DELETE, ResourceKey(NS, "pod", "reader"),
                                  {"metadata": {"name": "reader", "namespace": NS, "uid": "some-old-uid"}})
    assert cloud.send_and_wait(stale_delete).body == {"outcome": "absent"}
    assert running(cloud, "reader")
    with PodmanClient(base_url=node.podman.base_url) as client:
        assert len([p for p in client.pods.list() if p.name == f"{NS}_reader"]) == 1


def test_bad_input_gets_an_error_or_a_failed_status(edge_node: tuple[EdgeNode, Link, FakeCloud]) -> None:
    node, _link, cloud = edge_node
    unknown = cloud.send_and_wait(cloud.envelope(Op.INSERT, ResourceKey(NS, "gizmo", "g1"), {"metadata": {}}))
    assert unknown.op == Op.ERROR
    assert "unknown kind 'gizmo'" in unknown.body["reason"]
    mismatched = cloud.send_and_wait(cloud.envelope(Op.INSERT, ResourceKey(NS, "configmap", "a"),
                                                    configmap("b", {}, "1"), rv="1"))
    assert mismatched.op == Op.ERROR
    assert "metadata.name is 'b'" in mismatched.body["reason"]
    bad_pod = pod("broken", "true")
    bad_pod["spec"]["volumes"] = [{"name": "v", "nfs": {"server": "x"}}]
    cloud.send_and_wait(cloud.envelope(Op.INSERT, ResourceKey(NS, "pod", "broken"), bad_pod, rv="2"))
    status = wait_until(lambda: cloud.pod_status(NS, "broken"), timeout=30, what="broken's status")
    assert status["phase"] == "Failed"
    assert "nfs is not supported" in status["message"]
    never = pod("never", "true", container={"image": "localhost/absent:1", "imagePullPolicy": "Never"})
    cloud.send_and_wait(cloud.envelope(Op.INSERT, ResourceKey(NS, "pod", "never"), never, rv="3"))
    waiting = wait_until(lambda: s if (s := cloud.pod_status(NS, "never")) and s["containerStatuses"] else None,
                         timeout=30, what="never's status")
    assert waiting["containerStatuses"][0]["state"]["waiting"]["reason"] == "ErrImageNeverPull"
    pull = pod("pull", "true", container={"image": "registry.invalid/app:1", "imagePullPolicy": "IfNotPresent"})
    cloud.send_and_wait(cloud.envelope(Op.INSERT, ResourceKey(NS, "pod", "pull"), pull, rv="4"))
    waiting = wait_until(lambda: s if (s := cloud.pod_status(NS, "pull")) and s["containerStatuses"] else None,
                         timeout=30, what="pull's status")
    assert waiting["containerStatuses"][0]["state"]["waiting"]["reason"] in ("ErrImagePull", "ImagePullBackOff")
    for component, process in node.processes.items():
        assert process.returncode() is None, f"{component} died"


def test_sigkill_of_metamanager_mid_stream_loses_nothing_acknowledged(
        edge_node: tuple[EdgeNode, Link, FakeCloud]) -> None:
    node, _link, cloud = edge_node
    messages = []
    for i in range(500):  # 50 ConfigMaps, 10 updates each, resourceVersions rising
        name = f"cm-{i % 50}"
        rv = str(1000 + i)
        messages.append(cloud.envelope(Op.UPDATE, ResourceKey(NS, "configmap", name),
                                       configmap(name, {"n": str(i)}, rv), rv=rv))
    for message in messages:
        cloud.send(message)
    wait_until(lambda: sum(1 for m in messages if m.id in cloud.replies) >= 150, timeout=60,
               what="150 acknowledgements")
    node.kill("metamanager")
    acked_before = {m.id for m in messages if m.id in cloud.replies}
    assert len(acked_before) < 500, "MetaManager finished before it could be killed: send more"
    # What the store holds right after the crash, read from its file.
    store = MetaStore(node.workdir / "meta.db")
    try:
        assert store.integrity_ok()
        for m in messages:
            if m.id in acked_before:
                assert m.res is not None
                stored = store.get(m.res)
                assert stored is not None, f"{m.res} was acknowledged but is not stored"
                assert int(stored.rv) >= int(m.rv or 0)
    finally:
        store.close()
    node.start("metamanager")
    # The cloud resends whatever it has not heard back about, as CloudHub does.
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        missing = [m for m in messages if m.id not in cloud.replies]
        if not missing:
            break
        for m in missing:
            cloud.send(m)
        wait_until(partial(fewer_missing, messages, cloud, len(missing)), timeout=30,
                   what="progress on the resent updates")
    assert all(m.id in cloud.replies for m in messages)
    assert all(cloud.replies[m.id].op == Op.RESPONSE for m in messages)
    store = MetaStore(node.workdir / "meta.db")
    try:
        for i in range(50):
            stored = store.get(ResourceKey(NS, "configmap", f"cm-{i}"))
            assert stored is not None
            assert stored.rv == str(1000 + 450 + i)  # the last update of each
            assert stored.obj["data"] == {"n": str(450 + i)}
    finally:
        store.close()
    print(f"\n{len(acked_before)} of 500 acknowledged before the kill; all 500 applied after the resends")


def fewer_missing(messages: list[Any], cloud: FakeCloud, before: int) -> bool:
    return sum(1 for m in messages if m.id not in cloud.replies) < before


def test_probes_host_ports_and_graceful_deletion(edge_node: tuple[EdgeNode, Link, FakeCloud]) -> None:
    node, _link, cloud = edge_node
    # A web server on a hostPort, ready when its file exists; its liveness probe fails once /tmp/sick exists.
    web = pod("web", "echo ok > /tmp/index.html; trap 'echo TERM > /proc/1/fd/1; exit 0' TERM; "
                     "httpd -f -p 8080 -h /tmp & wait",
              container={
                  "ports": [{"containerPort": 8080, "hostPort": free_port()}],
                  "readinessProbe": {"exec": {"command": ["test", "-f", "/tmp/index.html"]}, "periodSeconds": 1},
                  "livenessProbe": {"exec": {"command": ["sh", "-c", "test ! -f /tmp/sick"]}, "periodSeconds": 1,
                                    "failureThreshold": 2},
              })
    host_port = web["spec"]["containers"][0]["ports"][0]["hostPort"]
    cloud.send_and_wait(cloud.envelope(Op.INSERT, ResourceKey(NS, "pod", "web"), web, rv="1"))
    ready = wait_until(lambda: (s := running(cloud, "web")) and s["containerStatuses"][0]["ready"] and s,
                       timeout=30, what="web Ready")
    assert {c["type"]: c["status"] for c in ready["conditions"]}["Ready"] == "True"
    with urllib.request.urlopen(f"http://127.0.0.1:{host_port}/index.html", timeout=5) as response:
        assert response.read() == b"ok\n"

    exec_in(node, "web", ["touch", "/tmp/sick"])
    restarted = wait_until(lambda: (s := running(cloud, "web")) and s["containerStatuses"][0]["restartCount"] >= 1
                           and s, timeout=40, what="the liveness probe to restart web")
    assert restarted["containerStatuses"][0]["lastState"]["terminated"]["exitCode"] == 0  # stopped with SIGTERM

    # Deletion as the API server does it: a deletionTimestamp first, then the pod stops within its grace period.
    deleting = dict(web, metadata={**web["metadata"], "deletionTimestamp": "2026-01-01T00:00:00Z",
                                   "deletionGracePeriodSeconds": 5})
    cloud.send_and_wait(cloud.envelope(Op.UPDATE, ResourceKey(NS, "pod", "web"), deleting, rv="2"))
    wait_until(lambda: not pod_exists(node, "web"), timeout=30, what="web's podman pod to be removed")
    final = wait_until(lambda: (s := cloud.pod_status(NS, "web")) and s["phase"] != "Running" and s, timeout=30,
                       what="web's final status")
    assert all("terminated" in c["state"] for c in final["containerStatuses"])


def test_restart_policies_and_crash_loop_backoff(edge_node: tuple[EdgeNode, Link, FakeCloud]) -> None:
    _node, _link, cloud = edge_node
    cloud.send_and_wait(cloud.envelope(Op.INSERT, ResourceKey(NS, "pod", "once"),
                                       pod("once", "exit 3", restartPolicy="Never"), rv="1"))
    cloud.send_and_wait(cloud.envelope(Op.INSERT, ResourceKey(NS, "pod", "done"),
                                       pod("done", "exit 0", restartPolicy="OnFailure"), rv="1"))
    cloud.send_and_wait(cloud.envelope(Op.INSERT, ResourceKey(NS, "pod", "crash"), pod("crash", "exit 1"), rv="1"))
    failed = wait_until(lambda: (s := cloud.pod_status(NS, "once")) and s["phase"] == "Failed" and s, timeout=30,
                        what="once Failed")
    assert failed["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 3
    assert failed["containerStatuses"][0]["restartCount"] == 0
    wait_until(lambda: (s := cloud.pod_status(NS, "done")) and s["phase"] == "Succeeded", timeout=30,
               what="done Succeeded")
    looping = wait_until(
        lambda: (s := cloud.pod_status(NS, "crash")) and s["containerStatuses"]
        and s["containerStatuses"][0]["state"].get("waiting", {}).get("reason") == "CrashLoopBackOff" and s,
        timeout=40, what="crash in CrashLoopBackOff")
    assert looping["containerStatuses"][0]["restartCount"] >= 1
    assert looping["containerStatuses"][0]["lastState"]["terminated"]["exitCode"] == 1
    assert "back-off 10s" in looping["containerStatuses"][0]["state"]["waiting"]["message"]


def test_edged_lists_again_when_metamanager_restarts(edge_node: tuple[EdgeNode, Link, FakeCloud]) -> None:
    """A MetaManager that died between its commit and the forward to EdgeD loses no pod."""
    node, _link, _cloud = edge_node
    node.stop("metamanager")
    store = MetaStore(node.workdir / "meta.db")  # committed, never forwarded
    try:
        store.upsert(ResourceKey(NS, "pod", "orphaned"), "5", pod("orphaned", "sleep 3600"))
    finally:
        store.close()
    node.start("metamanager")
    wait_until(partial(_restarted_locally, node, "orphaned", 0), timeout=30, what="the pod EdgeD never heard of")
