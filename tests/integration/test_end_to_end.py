"""End to end: the Kubernetes API on one side, pods in podman on the other."""

from __future__ import annotations

import os
import signal
import sqlite3
import time
from collections import Counter
from functools import partial
from typing import Any

import msgpack
from kubernetes import client as k8s
from podman import PodmanClient

from edge.metamanager.store import MetaStore
from schemas import topics
from schemas.batch import Batch
from schemas.envelope import DEFAULT_MAX_SIZE, Envelope, Group, Op, decode
from schemas.resource import ResourceKey
from tests.fixtures.mqtt import TestClient
from tests.fixtures.processes import wait_until
from tests.support.cluster import CLOUD_PW, NODE_PW, Cluster, node_names, reply_to
from tests.support.pods import exec_output

IMAGE = "localhost/busybox:latest"


def pod_manifest(name: str, node: str, command: str, **spec: Any) -> dict[str, Any]:
    container: dict[str, Any] = {"name": "main", "image": IMAGE, "imagePullPolicy": "IfNotPresent",
                                 "command": ["sh", "-c", command]}
    container.update(spec.pop("container", {}))
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"nodeName": node, "terminationGracePeriodSeconds": 3, "containers": [container], **spec}}


def running(cluster: Cluster, name: str) -> Any:
    pod = cluster.pod(name)
    if pod is None or pod.status.phase != "Running":
        return None
    statuses = pod.status.container_statuses or []
    return pod if statuses and all(s.state.running for s in statuses) else None


def exec_in(cluster: Cluster, pod_name: str, command: list[str]) -> tuple[int, str]:
    code, out, _err = exec_output(cluster.podman.base_url, pod_name, command)
    return code, out


def podman_pods(cluster: Cluster) -> set[str]:
    with PodmanClient(base_url=cluster.podman.base_url) as client:
        return {p.name for p in client.pods.list()}


def test_kubectl_flow(cluster_factory: Any) -> None:
    (node,) = node_names(1)
    cluster: Cluster = cluster_factory([node])
    core, ns = cluster.core, cluster.namespace
    core.create_namespaced_config_map(ns, k8s.V1ConfigMap(metadata=k8s.V1ObjectMeta(name="site"),
                                                          data={"index.html": "v1"}))
    t0 = time.monotonic()
    core.create_namespaced_pod(ns, pod_manifest("web", node, "sleep 3600", volumes=[
        {"name": "site", "configMap": {"name": "site"}}],
        container={"volumeMounts": [{"name": "site", "mountPath": "/site"}]}))
    pod = wait_until(lambda: running(cluster, "web"), timeout=30, what="web Running in the API server")
    running_after = time.monotonic() - t0
    assert pod.status.pod_ip
    assert pod.status.container_statuses[0].container_id.startswith("podman://")
    assert exec_in(cluster, "web", ["cat", "/site/index.html"]) == (0, "v1")

    core.patch_namespaced_config_map("site", ns, {"data": {"index.html": "v2"}})
    wait_until(lambda: exec_in(cluster, "web", ["cat", "/site/index.html"]) == (0, "v2"), timeout=15,
               what="the updated file in the container")

    t1 = time.monotonic()
    core.delete_namespaced_pod("web", ns)
    wait_until(lambda: cluster.pod("web") is None and f"{ns}_web" not in podman_pods(cluster), timeout=3 + 2 + 10,
               what="web gone from the API server and podman")
    deleted_after = time.monotonic() - t1
    print(f"\nRunning in the API server {running_after:.2f} s after create; deleted in {deleted_after:.2f} s")


def edge_store(cluster: Cluster, node: str) -> dict[str, str]:
    """What a node's MetaManager holds, read from its SQLite file: key -> resourceVersion."""
    edge, _link = cluster.nodes[node]
    store = MetaStore(edge.data / "meta.db")
    try:
        return {str(s.key): s.rv for s in store.all() if s.key.namespace == cluster.namespace}
    finally:
        store.close()


def api_view(cluster: Cluster, node: str, configmaps: list[str]) -> dict[str, str]:
    """What the node should hold: its pods and the ConfigMaps among ``configmaps`` that exist."""
    core, ns = cluster.core, cluster.namespace
    view = {f"{ns}/pod/{p.metadata.name}": p.metadata.resource_version
            for p in core.list_namespaced_pod(ns).items if p.spec.node_name == node}
    for cm in core.list_namespaced_config_map(ns).items:
        if cm.metadata.name in configmaps:
            view[f"{ns}/configmap/{cm.metadata.name}"] = cm.metadata.resource_version
    return view


def test_configmaps_reach_only_the_nodes_that_use_them(cluster_factory: Any) -> None:
    first, second = node_names(2)
    cluster: Cluster = cluster_factory([first, second])
    core, ns = cluster.core, cluster.namespace
    core.create_namespaced_config_map(ns, k8s.V1ConfigMap(metadata=k8s.V1ObjectMeta(name="only-second"),
                                                          data={"k": "v"}))
    core.create_namespaced_config_map(ns, k8s.V1ConfigMap(metadata=k8s.V1ObjectMeta(name="both"), data={"k": "v"}))
    core.create_namespaced_pod(ns, pod_manifest("p2", second, "sleep 3600", container={"envFrom": [
        {"configMapRef": {"name": "only-second"}}, {"configMapRef": {"name": "both"}}]}))
    core.create_namespaced_pod(ns, pod_manifest("p1", first, "sleep 3600", container={"envFrom": [
        {"configMapRef": {"name": "both"}}]}))
    wait_until(lambda: running(cluster, "p1") and running(cluster, "p2"), timeout=30, what="both pods Running")
    assert f"{ns}/configmap/only-second" in edge_store(cluster, second)
    assert f"{ns}/configmap/both" in edge_store(cluster, first)
    assert f"{ns}/configmap/only-second" not in edge_store(cluster, first)
    # When the last pod using it leaves, the ConfigMap leaves the node too.
    core.delete_namespaced_pod("p1", ns)
    wait_until(lambda: f"{ns}/configmap/both" not in edge_store(cluster, first), timeout=30,
               what="the unused ConfigMap removed from the first node")


def test_link_cut_for_a_minute_then_convergence(cluster_factory: Any) -> None:
    (node,) = node_names(1)
    cluster: Cluster = cluster_factory([node])
    core, ns = cluster.core, cluster.namespace
    names = [f"cm-{i}" for i in range(100)]
    # A pod that will use all of them (optional, so it runs before they exist).
    core.create_namespaced_pod(ns, pod_manifest("consumer", node, "sleep 3600", volumes=[
        {"name": "all", "projected": {"sources": [{"configMap": {"name": n, "optional": True}} for n in names]}}]))
    wait_until(lambda: running(cluster, "consumer"), timeout=30, what="consumer Running")
    _edge, link = cluster.nodes[node]
    link.down()
    cut = time.monotonic()
    for name in names:
        core.create_namespaced_config_map(ns, k8s.V1ConfigMap(metadata=k8s.V1ObjectMeta(name=name), data={"v": "1"}))
    for name in names[:50]:
        core.patch_namespaced_config_map(name, ns, {"data": {"v": "2"}})
    for name in names[50:70]:
        core.delete_namespaced_config_map(name, ns)
    for i in range(5):
        core.create_namespaced_pod(ns, pod_manifest(f"late-{i}", node, "sleep 3600"))
    wait_until(lambda: cluster.ready_status(node) == "Unknown", timeout=60, what="NodeReady Unknown during the cut")
    remaining = 60 - (time.monotonic() - cut)
    if remaining > 0:
        time.sleep(remaining)  # the scenario itself: the link stays down for a minute
    broker = cluster.cloud_broker
    with TestClient(broker.host, broker.port, username=node, password=NODE_PW) as watcher:
        watcher.subscribe(topics.link_down(node))  # what CloudHub sends the node, as the bridge hears it
        link.up()
        back = time.monotonic()
        wait_until(lambda: edge_store(cluster, node) == api_view(cluster, node, names), timeout=30,
                   what="the node's store to equal the API server's view")
        converged = time.monotonic() - back
    heard = [decode(watcher.messages.get_nowait().payload) for _ in range(watcher.messages.qsize())]
    batched = [len(e.body["members"]) for e in heard if e.op == Op.BATCH]
    # The resync after the cut puts ~90 objects in the node's queue at once: they go down packed (issue 19).
    assert batched, f"no batch among the {len(heard)} messages down the link"
    assert max(batched) > 1
    for i in range(5):
        wait_until(partial(running, cluster, f"late-{i}"), timeout=30, what=f"late-{i} Running")
    wait_until(lambda: cluster.ready_status(node) == "True", timeout=30, what="NodeReady True again")
    assert len([k for k in edge_store(cluster, node) if "/configmap/" in k]) == 80
    print(f"\nstore converged {converged:.1f} s after the link returned; {sum(batched)} objects came in "
          f"{len(batched)} batches of {len(heard)} messages down")


def test_cloudhub_killed_during_a_stream_of_updates(cluster_factory: Any) -> None:
    (node,) = node_names(1)
    cluster: Cluster = cluster_factory([node])
    core, ns = cluster.core, cluster.namespace
    names = [f"cm-{i}" for i in range(50)]
    for name in names:
        core.create_namespaced_config_map(ns, k8s.V1ConfigMap(metadata=k8s.V1ObjectMeta(name=name), data={"v": "0"}))
    core.create_namespaced_pod(ns, pod_manifest("consumer", node, "sleep 3600", volumes=[
        {"name": "all", "projected": {"sources": [{"configMap": {"name": n}} for n in names]}}]))
    wait_until(lambda: running(cluster, "consumer"), timeout=30, what="consumer Running")
    for i in range(500):
        core.patch_namespaced_config_map(names[i % 50], ns, {"data": {"v": str(i + 1)}})
        if i == 200:
            cluster.cloud["cloudhub"].kill()
        if i == 260:
            cluster.start_cloud("cloudhub")
    wait_until(lambda: edge_store(cluster, node) == api_view(cluster, node, names), timeout=60,
               what="the node to converge after CloudHub's crash")
    edge, _link = cluster.nodes[node]
    store = MetaStore(edge.data / "meta.db")
    try:
        for i, name in enumerate(names):
            stored = store.get(ResourceKey(ns, "configmap", name))
            assert stored is not None
            assert stored.obj["data"] == {"v": str(450 + i + 1)}  # the last update of each, nothing stale
    finally:
        store.close()


def test_metamanager_killed_mid_batch_converges_with_every_object_applied_once(cluster_factory: Any) -> None:
    """A pod that uses 150 ConfigMaps brings them all to its node at once: they go down the link in batches to a
    MetaManager that is stopped (SIGSTOP) and then SIGKILLed with batches in flight to it. What it had not
    answered, CloudHub sends again (packed anew). The store ends with every object once, at its last version,
    and the updates made after the restart land on top."""
    (node,) = node_names(1)
    cluster: Cluster = cluster_factory([node])
    core, ns = cluster.core, cluster.namespace
    names = [f"cm-{i}" for i in range(150)]
    for name in names:
        core.create_namespaced_config_map(ns, k8s.V1ConfigMap(metadata=k8s.V1ObjectMeta(name=name), data={"v": "0"}))
    edge, _link = cluster.nodes[node]
    broker = cluster.cloud_broker
    heard: list[Envelope] = []

    def hear(watcher: TestClient) -> list[Envelope]:
        while not watcher.messages.empty():
            heard.append(decode(watcher.messages.get_nowait().payload))
        return heard

    with TestClient(broker.host, broker.port, username=node, password=NODE_PW) as watcher:
        watcher.subscribe(topics.link_down(node))  # what CloudHub sends the node, as the bridge hears it
        metamanager = edge.processes["metamanager"]
        os.kill(metamanager.pid, signal.SIGSTOP)  # the batches reach it, and it cannot take them
        core.create_namespaced_pod(ns, pod_manifest("consumer", node, "sleep 3600", volumes=[
            {"name": "all", "projected": {"sources": [{"configMap": {"name": n}} for n in names]}}]))
        wait_until(lambda: sum(e.op == Op.BATCH for e in hear(watcher)) >= 2, timeout=30,
                   what="batches down the link")
        assert not [k for k in edge_store(cluster, node) if "/configmap/" in k]  # in flight, none applied
        edge.kill("metamanager")
        edge.start("metamanager")
        for name in names:
            core.patch_namespaced_config_map(name, ns, {"data": {"v": "1"}})
        wait_until(lambda: edge_store(cluster, node) == api_view(cluster, node, names), timeout=90,
                   what="the node's store to equal the API server's view after MetaManager's SIGKILL")
        hear(watcher)
    batches = [e for e in heard if e.op == Op.BATCH]
    assert batches
    assert max(len(e.body["members"]) for e in batches) > 1
    # Sent again by CloudHub, or handed again by the edge broker to the new MetaManager's session: either way
    # applied once.
    sent = Counter(m.id for e in heard for m in (Batch.parse(e).members(DEFAULT_MAX_SIZE) if e.op == Op.BATCH else [e]))
    store = MetaStore(edge.data / "meta.db")
    try:
        held = [s for s in store.all() if s.key.namespace == ns and s.key.kind == "configmap"]
        assert sorted(s.key.name for s in held) == sorted(names)  # each once
        assert all(s.obj["data"] == {"v": "1"} for s in held)  # at its last version: nothing older on top
    finally:
        store.close()
    wait_until(lambda: running(cluster, "consumer"), timeout=60, what="consumer Running with its 150 ConfigMaps")
    print(f"\n{sum(len(e.body['members']) for e in batches)} objects in {len(batches)} batches among "
          f"{len(heard)} messages down the link; {sum(1 for n in sent.values() if n > 1)} sent more than once")


def queued_up(cluster: Cluster, node: str) -> list[Envelope]:
    """The pod statuses and Events in a node's outbox (EdgeHub's SQLite file), oldest first: what it still owes
    the cloud of those kinds."""
    edge, _link = cluster.nodes[node]
    db = sqlite3.connect(f"file:{edge.data / 'outbox.db'}?mode=ro", uri=True, timeout=10)
    try:
        rows = db.execute("SELECT payload FROM outbox ORDER BY seq").fetchall()
    finally:
        db.close()
    found = [decode(bytes(row[0])) for row in rows]
    return [e for e in found if e.res is not None and e.res.kind in ("podstatus", "event")]


def pod_status_seen(status: dict[str, Any]) -> tuple[str, int, str]:
    """What tells one status of a pod from the next here: phase, restart count, container."""
    (container,) = status["containerStatuses"]
    return status["phase"], container["restartCount"], container.get("containerID", "")


def test_a_batch_up_interrupted_converges_with_every_status_applied_once(cluster_factory: Any) -> None:
    """The up-link counterpart of the MetaManager test above. During a cut, every pod's container restarts: the
    node's outbox holds a new status and Events for each. When the link returns, the outbox goes up in batches
    (the cloud answered the hello: issue 19), to a cloud whose EdgeController is stopped (SIGSTOP): the batches
    reach CloudHub, which routes the members, and nothing is written. Then CloudHub and EdgeController are
    SIGKILLed and started again. What was not answered, EdgeHub sends again (each alone), and the broker may
    hand CloudHub's session the batches once more: every pod ends at its last status (nothing older on top), every
    Event at the count the node last sent, and the node owes the cloud nothing."""
    (node,) = node_names(1)
    cluster: Cluster = cluster_factory([node])
    core, ns = cluster.core, cluster.namespace
    pods = [f"up-{i}" for i in range(6)]
    for name in pods:
        core.create_namespaced_pod(ns, pod_manifest(name, node, "sleep 3600"))
    for name in pods:
        wait_until(partial(running, cluster, name), timeout=60, what=f"{name} Running")
    _edge, link = cluster.nodes[node]
    link.down()
    for name in pods:
        code, _ = exec_in(cluster, name, ["sh", "-c", "kill -9 $(pidof sleep)"])
        assert code in (0, 137)

    def restarted_statuses() -> dict[str, tuple[str, int, str]] | None:
        """Each pod's status in the outbox once its container runs again and is ready. Not earlier: EdgeD
        reports a restarted container first as not yet running, and a later status replaces that entry in the
        outbox; one written after the link returns goes up on its own, not in the batch the test waits for."""
        queued = {e.res.name: e.body["status"] for e in queued_up(cluster, node)
                  if e.res is not None and e.res.kind == "podstatus"}
        settled = len(queued) == len(pods) and all(
            pod_status_seen(status)[:2] == ("Running", 1) and all(
                c.get("ready") is True and "running" in c.get("state", {}) for c in status["containerStatuses"])
            for status in queued.values())
        # None, not {}: wait_until takes anything but None and False for the answer, and an empty dict ended the
        # wait at once, so the link came back before the restarts were queued.
        return {name: pod_status_seen(status) for name, status in queued.items()} if settled else None

    wait_until(restarted_statuses, timeout=60, what="the restarted pods' statuses queued in the node's outbox")
    broker = cluster.cloud_broker
    heard: list[Envelope] = []

    def hear(watcher: TestClient) -> list[Envelope]:
        while not watcher.messages.empty():
            envelope = decode(watcher.messages.get_nowait().payload)
            members = Batch.parse(envelope).members(DEFAULT_MAX_SIZE) if envelope.op == Op.BATCH else [envelope]
            heard.extend(members)
            if envelope.op == Op.BATCH:
                batches.append(len(members))
                batched.update(m.res.kind for m in members if m.res is not None)
        return heard

    batches: list[int] = []
    batched: set[str] = set()
    with TestClient(broker.host, broker.port, username="cloud", password=CLOUD_PW) as watcher:
        watcher.subscribe(topics.link_up(node))  # what the node sends, as CloudHub hears it
        controller = cluster.cloud["edgecontroller"]
        os.kill(controller.pid, signal.SIGSTOP)  # CloudHub takes the batches; nothing writes them
        link.up()
        wait_until(lambda: hear(watcher) and "podstatus" in batched and max(batches) > 1, timeout=30,
                   what="pod statuses going up the link in batches")
        assert all(cluster.pod(name).status.container_statuses[0].restart_count == 0 for name in pods)
        cluster.cloud["cloudhub"].kill()
        controller.kill()
        cluster.start_cloud("cloudhub")
        cluster.start_cloud("edgecontroller")

        def converged() -> bool:
            hear(watcher)
            last = {e.res.name: pod_status_seen(e.body["status"]) for e in heard
                    if e.res is not None and e.res.kind == "podstatus" and e.op == Op.UPDATE}
            api: dict[str, tuple[str, int, str]] = {}
            for name in pods:
                status = k8s.ApiClient().sanitize_for_serialization(cluster.pod(name).status)
                api[name] = pod_status_seen(status)
            return api == last and not queued_up(cluster, node)

        wait_until(converged, timeout=90, what="every pod at its last status and the node's outbox settled")

        def event_counts() -> tuple[dict[str, int], dict[str, int]]:
            """The count each of the pods' Events last went up with, and the count the API server holds."""
            sent: dict[str, int] = {}
            for e in hear(watcher):
                if e.res is not None and e.res.kind == "event" and e.res.namespace == ns and e.op == Op.UPDATE:
                    sent[e.res.name] = max(sent.get(e.res.name, 0), int(e.body["count"]))
            held = {ev.metadata.name: ev.count for ev in core.list_namespaced_event(ns).items
                    if ev.metadata.name in sent}
            return sent, held

        # Each Event once, at the count the node last sent: nothing counted twice, nothing older on top.
        wait_until(lambda: (c := event_counts())[0] == c[1], timeout=30,
                   what="the API server's Events at the counts the node sent")
        sent, _held = event_counts()
    assert sent, "no Event of the pods went up"
    assert any(count > 1 for count in sent.values())  # the restarts' repeats, queued during the cut
    assert all(pod_status_seen(k8s.ApiClient().sanitize_for_serialization(cluster.pod(name).status))[1] == 1
               for name in pods)
    print(f"\n{sum(batches)} entries in {len(batches)} batches up the link (largest {max(batches)}); "
          f"{len(heard)} envelopes heard")


def test_edgecontroller_restart_loses_no_status(cluster_factory: Any) -> None:
    (node,) = node_names(1)
    cluster: Cluster = cluster_factory([node])
    core, ns = cluster.core, cluster.namespace
    core.create_namespaced_pod(ns, pod_manifest("steady", node, "sleep 3600"))
    wait_until(lambda: running(cluster, "steady"), timeout=30, what="steady Running")
    cluster.cloud["edgecontroller"].stop()
    code, _ = exec_in(cluster, "steady", ["sh", "-c", "kill -9 $(pidof sleep)"])
    assert code in (0, 137)
    cluster.start_cloud("edgecontroller")
    restarted = wait_until(
        lambda: (p := running(cluster, "steady")) and p.status.container_statuses[0].restart_count == 1 and p,
        timeout=40, what="the restart made while EdgeController was away to reach the API server")
    assert restarted.status.container_statuses[0].last_state.terminated is not None
    nodes = [n for n in core.list_node().items if n.metadata.name == node]
    assert len(nodes) == 1
    assert "node-role.kubernetes.io/edge" in nodes[0].metadata.labels


def test_bad_input_from_an_edge_changes_nothing(cluster_factory: Any) -> None:
    mine, other = node_names(2)
    cluster: Cluster = cluster_factory([mine, other])
    core, ns = cluster.core, cluster.namespace
    core.create_namespaced_pod(ns, pod_manifest("theirs", other, "sleep 3600"))
    before = wait_until(lambda: running(cluster, "theirs"), timeout=30, what="theirs Running")
    broker = cluster.cloud_broker
    with TestClient(broker.host, broker.port, username=mine, password=NODE_PW) as edge:
        edge.subscribe(topics.link_down(mine))
        # 1. speaking for another node
        forged = Envelope(node=other, src="edged", group=Group.RESOURCE, op=Op.UPDATE,
                          res=ResourceKey(ns, "podstatus", "theirs"), body={"status": {"phase": "Failed"}})
        edge.publish(topics.link_up(mine), forged.encode())
        reply = reply_to(edge, forged.id)
        assert (reply.op, reply.body["code"]) == (Op.ERROR, 403)
        # 2. a status for a pod bound to another node, under its own name
        sneaky = Envelope(node=mine, src="edged", group=Group.RESOURCE, op=Op.UPDATE,
                          res=ResourceKey(ns, "podstatus", "theirs"),
                          body={"metadata": {"uid": before.metadata.uid}, "status": {"phase": "Failed"}})
        edge.publish(topics.link_up(mine), sneaky.encode())
        reply = reply_to(edge, sneaky.id)
        assert (reply.op, reply.body["code"]) == (Op.ERROR, 403)
        assert "not bound to" in reply.body["reason"]
        # 3. a status for a pod that does not exist: acknowledged, and the node is told to drop it
        ghost = Envelope(node=mine, src="edged", group=Group.RESOURCE, op=Op.UPDATE,
                         res=ResourceKey(ns, "podstatus", "ghost"),
                         body={"metadata": {"uid": "ghost-uid"}, "status": {"phase": "Running"}})
        edge.publish(topics.link_up(mine), ghost.encode())
        # The node's own traffic shares the down link (the answer to its node status every 10 s, resends), so
        # what answers the ghost is picked out of what comes, not taken as the next two messages.
        answered = dropped = False
        deadline = time.monotonic() + 20
        while not (answered and dropped):
            assert time.monotonic() < deadline, f"ghost answered: {answered}, dropped: {dropped}"
            heard = decode(edge.expect().payload)
            answered |= heard.op == Op.RESPONSE and heard.parent == ghost.id
            dropped |= heard.op == Op.DELETE and heard.res == ResourceKey(ns, "pod", "ghost")
        # 4. garbage, and a broken envelope whose sender can be told why
        edge.publish(topics.link_up(mine), b"\xff\x00garbage")
        broken = Envelope(node=mine, src="edged", group=Group.RESOURCE, op=Op.UPDATE).to_map()
        broken["op"] = "explode"
        edge.publish(topics.link_up(mine), msgpack.packb(broken))
        reply = reply_to(edge, broken["id"])
        assert (reply.op, reply.body["code"]) == (Op.ERROR, 400)
    after = cluster.pod("theirs")
    assert after.status.phase == "Running"
    assert cluster.pod("ghost") is None
    for process in cluster.cloud.values():
        assert process.returncode() is None
