"""The container lifecycle a kubelet gives a pod, on real podman through a real edge node: init containers,
tcpSocket and startup probes, postStart and preStop hooks, termination messages."""

from __future__ import annotations

import time
from functools import partial
from pathlib import Path
from typing import Any

from podman import PodmanClient

from tests.fixtures.processes import wait_until
from tests.support.cloud import FakeCloud
from tests.support.cluster import Cluster, node_names
from tests.support.edge_node import EdgeNode, Link
from tests.support.pods import IMAGE, NS, containers_of, exec_in, pod, pod_exists, send, status_where

Node = tuple[EdgeNode, Link, FakeCloud]


def init(name: str, command: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "image": IMAGE, "imagePullPolicy": "IfNotPresent", "command": ["sh", "-c", command],
            **extra}


def conditions(status: dict[str, Any]) -> dict[str, str]:
    return {c["type"]: c["status"] for c in status["conditions"]}


def test_init_containers_run_in_order_before_the_app(edge_node: Node) -> None:
    node, _link, cloud = edge_node
    # "first" waits for the test's go, so the pod is seen initialising; "second" fails unless "first" has
    # finished before it starts. Both see the emptyDir and their env, as the app does.
    spec = pod("ordered", "cat /work/order; sleep 3600",
               volumes=[{"name": "work", "emptyDir": {}}],
               initContainers=[
                   init("first", "until [ -f /work/go ]; do sleep 0.1; done; echo $STEP >> /work/order",
                        env=[{"name": "STEP", "value": "first"}],
                        volumeMounts=[{"name": "work", "mountPath": "/work"}]),
                   init("second", "grep -q first /work/order && echo second >> /work/order",
                        volumeMounts=[{"name": "work", "mountPath": "/work"}]),
               ],
               container={"volumeMounts": [{"name": "work", "mountPath": "/work"}]})
    send(cloud, spec)
    pending = status_where(cloud, "ordered", lambda s: s.get("initContainerStatuses") and "running" in
                           s["initContainerStatuses"][0]["state"], "the first init container running")
    assert pending["phase"] == "Pending"
    assert conditions(pending)["Initialized"] == "False"
    assert pending["initContainerStatuses"][1]["state"]["waiting"]["reason"] == "PodInitializing"
    assert pending["containerStatuses"][0]["state"]["waiting"]["reason"] == "PodInitializing"
    assert containers_of(node, "ordered") == ["first"]  # nothing else made yet
    assert exec_in(node, "ordered", ["touch", "/work/go"])[0] == 0

    done = status_where(cloud, "ordered", lambda s: s["phase"] == "Running"
                        and "running" in s["containerStatuses"][0]["state"], "the app container running")
    assert conditions(done)["Initialized"] == "True"
    for status in done["initContainerStatuses"]:
        assert status["state"]["terminated"]["exitCode"] == 0, status
        assert status["state"]["terminated"]["reason"] == "Completed"
        assert status["ready"] is True
        assert status["restartCount"] == 0
        assert status["containerID"].startswith("podman://")
        assert status["image"] == IMAGE
    assert [s["name"] for s in done["initContainerStatuses"]] == ["first", "second"]
    assert exec_in(node, "ordered", ["cat", "/work/order"]) == (0, "first\nsecond\n")

    # The whole pod stopped, as a reboot of the machine leaves it: a new sandbox, whose init containers run again.
    with PodmanClient(base_url=node.podman.base_url) as client:
        sandbox = client.pods.get(f"{NS}_ordered")
        for container in sorted(client.containers.list(filters={"pod": sandbox.id}),
                                key=lambda c: c.id == sandbox.attrs["InfraContainerID"]):  # the infra last
            container.stop(timeout=1)
    wait_until(lambda: exec_in(node, "ordered", ["cat", "/work/order"]) == (0, "first\nsecond\n" * 2), timeout=40,
               what="the init containers to run again in the new sandbox")


def test_a_failed_init_container_fails_the_pod_under_never_and_restarts_under_on_failure(edge_node: Node) -> None:
    node, _link, cloud = edge_node
    send(cloud, pod("initnever", "sleep 3600", restartPolicy="Never", initContainers=[init("setup", "exit 3")]))
    send(cloud, pod("initretry", "sleep 3600", restartPolicy="OnFailure", initContainers=[init("setup", "exit 1")]))
    failed = status_where(cloud, "initnever", lambda s: s["phase"] == "Failed", "initnever Failed")
    ended = failed["initContainerStatuses"][0]["state"]["terminated"]
    assert (ended["exitCode"], ended["reason"]) == (3, "Error")
    assert failed["containerStatuses"][0]["state"]["waiting"]["reason"] == "PodInitializing"
    assert containers_of(node, "initnever") == ["setup"]  # the app container was never made

    looping = status_where(cloud, "initretry", lambda s: s["initContainerStatuses"][0]["restartCount"] >= 1
                           and "waiting" in s["initContainerStatuses"][0]["state"], "initretry in back-off")
    setup = looping["initContainerStatuses"][0]
    assert setup["state"]["waiting"]["reason"] == "CrashLoopBackOff"
    assert setup["lastState"]["terminated"]["exitCode"] == 1
    assert looping["phase"] == "Pending"
    assert looping["containerStatuses"][0]["state"]["waiting"]["reason"] == "PodInitializing"
    assert "main" not in containers_of(node, "initretry")


def test_tcp_socket_readiness_on_a_named_port(edge_node: Node) -> None:
    node, _link, cloud = edge_node
    send(cloud, pod("tcp", "sleep 3600", container={
        "ports": [{"name": "web", "containerPort": 8080}],
        "readinessProbe": {"tcpSocket": {"port": "web"}, "periodSeconds": 1, "timeoutSeconds": 1}}))
    unready = status_where(cloud, "tcp", lambda s: s["phase"] == "Running", "tcp Running")
    assert unready["containerStatuses"][0]["ready"] is False  # nothing listens yet
    assert conditions(unready)["Ready"] == "False"
    assert exec_in(node, "tcp", ["httpd", "-p", "8080", "-h", "/tmp"])[0] == 0  # busybox httpd: it forks
    ready = status_where(cloud, "tcp", lambda s: s["containerStatuses"][0]["ready"], "tcp Ready")
    assert conditions(ready)["Ready"] == "True"


def test_http_get_readiness_on_a_named_port_and_path(edge_node: Node) -> None:
    node, _link, cloud = edge_node
    send(cloud, pod("http", "httpd -f -p 8080 -h /tmp", container={
        "ports": [{"name": "web", "containerPort": 8080}],
        "readinessProbe": {"httpGet": {"port": "web", "path": "/ok.html",
                                       "httpHeaders": [{"name": "X-Probe", "value": "edge"}]},
                           "periodSeconds": 1, "failureThreshold": 1}}))
    unready = status_where(cloud, "http", lambda s: s["phase"] == "Running", "http Running")
    assert unready["containerStatuses"][0]["ready"] is False  # 404 until the file is there
    assert exec_in(node, "http", ["sh", "-c", "echo ok > /tmp/ok.html"])[0] == 0
    status_where(cloud, "http", lambda s: s["containerStatuses"][0]["ready"], "http Ready")
    assert exec_in(node, "http", ["rm", "/tmp/ok.html"])[0] == 0
    status_where(cloud, "http", lambda s: not s["containerStatuses"][0]["ready"], "http not Ready again")


def test_a_startup_probe_holds_readiness_back_until_it_passes(edge_node: Node) -> None:
    node, _link, cloud = edge_node
    send(cloud, pod("slow", "sleep 3600", container={
        "startupProbe": {"exec": {"command": ["sh", "-c", "echo run >> /tmp/startup-runs; test -f /tmp/started"]},
                         "periodSeconds": 1, "failureThreshold": 100},
        "readinessProbe": {"exec": {"command": ["true"]}, "periodSeconds": 1}}))
    status_where(cloud, "slow", lambda s: s["phase"] == "Running", "slow Running")
    wait_until(lambda: int(exec_in(node, "slow", ["sh", "-c", "cat /tmp/startup-runs 2>/dev/null | wc -l"])[1]) >= 3,
               timeout=30, what="three runs of the startup probe")
    starting = cloud.pod_status(NS, "slow")
    assert starting is not None
    assert starting["containerStatuses"][0]["started"] is False
    assert starting["containerStatuses"][0]["ready"] is False  # its readiness probe would pass: not yet run
    exec_in(node, "slow", ["touch", "/tmp/started"])
    ready = status_where(cloud, "slow", lambda s: s["containerStatuses"][0]["ready"], "slow Ready")
    assert ready["containerStatuses"][0]["started"] is True
    assert ready["containerStatuses"][0]["restartCount"] == 0


def test_a_startup_probe_that_never_passes_gets_the_container_restarted(edge_node: Node) -> None:
    _node, _link, cloud = edge_node
    send(cloud, pod("neverstarts", "sleep 3600", container={
        "startupProbe": {"exec": {"command": ["false"]}, "periodSeconds": 1, "failureThreshold": 2},
        "livenessProbe": {"exec": {"command": ["true"]}, "periodSeconds": 1}}))
    restarted = status_where(cloud, "neverstarts", lambda s: s["containerStatuses"][0]["restartCount"] >= 1,
                             "a restart after the startup probe failed twice")
    main = restarted["containerStatuses"][0]
    assert main["lastState"]["terminated"]["exitCode"] != 0  # stopped by EdgeD, not ended by itself
    assert main["started"] is False


def test_post_start_runs_in_the_container_and_its_failure_kills_it(edge_node: Node) -> None:
    node, _link, cloud = edge_node
    send(cloud, pod("hooked", "sleep 3600", container={
        "lifecycle": {"postStart": {"exec": {"command": ["sh", "-c", "echo hooked > /tmp/poststart"]}}}}))
    send(cloud, pod("badhook", "sleep 3600", restartPolicy="Never", container={
        "lifecycle": {"postStart": {"exec": {"command": ["false"]}}}}))
    status_where(cloud, "hooked", lambda s: s["phase"] == "Running", "hooked Running")
    assert exec_in(node, "hooked", ["cat", "/tmp/poststart"]) == (0, "hooked\n")
    failed = status_where(cloud, "badhook", lambda s: s["phase"] == "Failed", "badhook Failed")
    assert failed["containerStatuses"][0]["state"]["terminated"]["exitCode"] != 0
    # Told as kubelet tells it, in a FailedPostStartHook event. The status's waiting reason PostStartHookError
    # lasts only until the killed container's end is seen; when both statuses wait in the outbox together, the
    # later one replaces it (coalescing, as kubelet's status manager sends only the latest), so it is no evidence.
    hook_events = wait_until(lambda: [e.body for e in cloud.upstream("event")
                                      if e.body.get("reason") == "FailedPostStartHook"
                                      and e.body["involvedObject"].get("name") == "badhook"] or None,
                             timeout=30, what="badhook's FailedPostStartHook event")
    assert "lifecycle hook for container main failed: exit code 1" in hook_events[0]["message"]
    assert hook_events[0]["type"] == "Warning"


def test_pre_stop_runs_before_the_stop_signal_within_the_grace_period(edge_node: Node, tmp_path: Path) -> None:
    node, _link, cloud = edge_node
    shared = tmp_path / "shared"
    # The container notes SIGTERM and carries on: only the end of the grace period stops it (SIGKILL). Its
    # preStop hook takes a second of that period: the stop signal comes after it, the kill 3 s after the start.
    spec = pod("stopper", "trap 'echo TERM >> /host/order' TERM; echo started >> /host/order; "
                          "while true; do sleep 0.1; done",
               volumes=[{"name": "host", "hostPath": {"path": str(shared)}}],
               container={"volumeMounts": [{"name": "host", "mountPath": "/host"}],
                          "lifecycle": {"preStop": {"exec": {"command": [
                              "sh", "-c", "sleep 1; echo prestop >> /host/order"]}}}})
    send(cloud, spec)
    wait_until(lambda: (shared / "order").is_file() and (shared / "order").read_text() == "started\n", timeout=30,
               what="the container started")
    status_where(cloud, "stopper", lambda s: s["phase"] == "Running", "stopper Running")
    deleting = dict(spec, metadata={**spec["metadata"], "deletionTimestamp": "2026-01-01T00:00:00Z",
                                    "deletionGracePeriodSeconds": 3})
    t0 = time.monotonic()
    send(cloud, deleting, rv="2")
    wait_until(lambda: not pod_exists(node, "stopper"), timeout=30, what="stopper's podman pod removed")
    took = time.monotonic() - t0
    assert (shared / "order").read_text().splitlines() == ["started", "prestop", "TERM"]
    # 3 s of grace, the hook's second included (podman's own stop timeout, 10 s, would take longer).
    assert 3 <= took < 9, took


def test_termination_messages_from_the_file_and_from_the_log(edge_node: Node) -> None:
    _node, _link, cloud = edge_node
    send(cloud, pod("said", "printf 'all done' > /dev/termination-log", restartPolicy="Never"))
    send(cloud, pod("elsewhere", "printf 'custom place' > /tmp/why; exit 4", restartPolicy="Never",
                    container={"terminationMessagePath": "/tmp/why"}))
    send(cloud, pod("logged", "echo line1; echo oops; exit 2", restartPolicy="Never",
                    container={"terminationMessagePolicy": "FallbackToLogsOnError"}))
    done = partial(status_where, cloud)
    said = done("said", lambda s: s["phase"] == "Succeeded", "said Succeeded")
    assert said["containerStatuses"][0]["state"]["terminated"]["message"] == "all done"
    elsewhere = done("elsewhere", lambda s: s["phase"] == "Failed", "elsewhere Failed")
    assert elsewhere["containerStatuses"][0]["state"]["terminated"]["message"] == "custom place"
    logged = done("logged", lambda s: s["phase"] == "Failed", "logged Failed")
    assert logged["containerStatuses"][0]["state"]["terminated"]["message"] == "line1\noops\n"


def test_through_the_api_server(cluster_factory: Any) -> None:
    """What the API server stores of it: init container statuses, the Initialized condition, a termination
    message; and a pod with init containers deleted within its grace period."""
    (node_name,) = node_names(1)
    cluster: Cluster = cluster_factory([node_name])
    core, ns = cluster.core, cluster.namespace
    # It ignores SIGTERM: only the end of its grace period (2 s) stops it.
    spec = pod("full", "trap '' TERM; cat /work/x; sleep 3600", volumes=[{"name": "work", "emptyDir": {}}],
               initContainers=[init("setup", "echo ready > /work/x",
                                    volumeMounts=[{"name": "work", "mountPath": "/work"}])],
               container={"volumeMounts": [{"name": "work", "mountPath": "/work"}]})
    ends = pod("ends", "printf 'bye' > /dev/termination-log", restartPolicy="Never")
    for manifest in (spec, ends):
        manifest["metadata"] = {"name": manifest["metadata"]["name"]}
        manifest["spec"]["nodeName"] = node_name
        core.create_namespaced_pod(ns, manifest)

    def api_pod(name: str, phase: str) -> Any:
        found = cluster.pod(name)
        return found if found is not None and found.status.phase == phase else None
    full = wait_until(lambda: api_pod("full", "Running"), timeout=30, what="full Running in the API server")
    (setup,) = full.status.init_container_statuses
    assert (setup.name, setup.state.terminated.exit_code, setup.ready) == ("setup", 0, True)
    assert {c.type: c.status for c in full.status.conditions}["Initialized"] == "True"
    done = wait_until(lambda: api_pod("ends", "Succeeded"), timeout=30, what="ends Succeeded in the API server")
    assert done.status.container_statuses[0].state.terminated.message == "bye"

    t0 = time.monotonic()
    core.delete_namespaced_pod("full", ns)  # grace: the manifest's 2 s
    wait_until(lambda: cluster.pod("full") is None, timeout=30, what="full gone from the API server")
    assert time.monotonic() - t0 < 2 + 5  # podman's own 10 s stop timeout would take longer
