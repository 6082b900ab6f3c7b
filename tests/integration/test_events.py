"""Events a kubelet records, from a real edge node (podman) through EdgeHub's outbox and EdgeController into the
real API server: what ``kubectl get events`` and ``kubectl describe pod`` show, counts of repeats, the node's
own events, and the refusal of an event a node may not write."""

from __future__ import annotations

import contextlib
import sqlite3
from typing import Any

from schemas import topics
from schemas.envelope import Envelope, Group, Op, decode
from schemas.events import KubeEvent, ObjectRef
from schemas.resource import ResourceKey
from schemas.timefmt import now_rfc3339
from tests.fixtures.mqtt import TestClient
from tests.fixtures.processes import wait_until
from tests.support.cluster import NODE_PW, Cluster, ask_as_node, node_names
from tests.support.pods import IMAGE
from tests.workloads.kube import kubectl

EVENT_TIMEOUT_S = 90.0


def make_pod(cluster: Cluster, node: str, name: str, command: str, image: str = IMAGE,
             policy: str = "IfNotPresent", container: dict[str, Any] | None = None, **spec: Any) -> str:
    """Creates the pod bound to ``node``; its UID. ``container`` adds to its container, ``spec`` to its spec."""
    created = cluster.core.create_namespaced_pod(cluster.namespace, {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
        "spec": {"nodeName": node, "terminationGracePeriodSeconds": 1, "containers": [
            {"name": "main", "image": image, "imagePullPolicy": policy, "command": ["sh", "-c", command],
             **(container or {})}], **spec}})
    return str(created.metadata.uid)


def events_of(cluster: Cluster, namespace: str, kind: str, name: str) -> list[Any]:
    found = cluster.core.list_namespaced_event(namespace, field_selector=f"involvedObject.name={name}")
    return [e for e in found.items if e.involved_object.kind == kind]


def event_where(cluster: Cluster, name: str, reason: str, *, count: int = 1, message: str = "",
                namespace: str | None = None, kind: str = "Pod") -> Any:
    """Waits for an event about ``name`` with ``reason``, a message containing ``message`` and at least
    ``count`` occurrences; returns it."""
    def found() -> Any:
        for event in events_of(cluster, namespace or cluster.namespace, kind, name):
            if event.reason == reason and message in (event.message or "") and (event.count or 0) >= count:
                return event
        return None
    return wait_until(found, timeout=EVENT_TIMEOUT_S,
                      what=f"event {reason} x{count} about {kind} {name} ({message!r})")


def test_a_pods_life_and_troubles_show_as_kubelet_events(cluster_factory: Any) -> None:
    (node,) = node_names(1)
    cluster: Cluster = cluster_factory([node])
    ns = cluster.namespace
    ok_uid = make_pod(cluster, node, "ok", "sleep 3600")
    make_pod(cluster, node, "crash", "exit 1")
    # Nothing listens on localhost's HTTPS port: every pull fails at once.
    make_pod(cluster, node, "badimage", "true", image="localhost/no-such-image:1", policy="Always")
    make_pod(cluster, node, "nomount", "sleep 3600", volumes=[{"name": "cfg", "configMap": {"name": "nope"}}],
             container={"volumeMounts": [{"name": "cfg", "mountPath": "/cfg"}]})
    make_pod(cluster, node, "sick", "sleep 3600", container={"livenessProbe": {
        "exec": {"command": ["false"]}, "periodSeconds": 1, "failureThreshold": 2}})

    # A normal pod: the image is there (IfNotPresent, so no Pulling), then Created and Started.
    pulled = event_where(cluster, "ok", "Pulled", message=f'Container image "{IMAGE}" already present on machine')
    created = event_where(cluster, "ok", "Created", message="Created container main")
    started = event_where(cluster, "ok", "Started", message="Started container main")
    for event in (pulled, created, started):
        assert event.type == "Normal"
        assert (event.source.component, event.source.host) == ("kubelet", node)
        ref = event.involved_object
        assert (ref.kind, ref.namespace, ref.name, ref.uid, ref.api_version, ref.field_path) == (
            "Pod", ns, "ok", ok_uid, "v1", "spec.containers{main}")
        assert ref.resource_version
    assert not [e for e in events_of(cluster, ns, "Pod", "ok") if e.reason == "Pulling"]

    # A crash-looping pod: BackOff, repeated on the same Event with a count.
    backoff = event_where(cluster, "crash", "BackOff", count=2, message="Back-off restarting failed container")
    assert backoff.type == "Warning"
    assert backoff.first_timestamp < backoff.last_timestamp
    assert len([e for e in events_of(cluster, ns, "Pod", "crash") if e.reason == "BackOff"]) == 1
    event_where(cluster, "crash", "Started", count=2, message="Started container main")

    # An image that cannot be pulled: Pulling, Failed (the pull's error, then ErrImagePull) and the back-off.
    event_where(cluster, "badimage", "Pulling", message='Pulling image "localhost/no-such-image:1"')
    event_where(cluster, "badimage", "Failed", message='Failed to pull image "localhost/no-such-image:1"')
    failed = event_where(cluster, "badimage", "Failed", count=2, message="Error: ErrImagePull")
    assert failed.type == "Warning"
    event_where(cluster, "badimage", "BackOff", message='Back-off pulling image "localhost/no-such-image:1"')

    # A volume whose ConfigMap is missing: FailedMount, as kubelet's volume manager words it.
    mount = event_where(cluster, "nomount", "FailedMount",
                        message='MountVolume.SetUp failed for volume "cfg" : configmap "nope" not found')
    assert (mount.type, mount.involved_object.field_path) == ("Warning", None)
    # A failing liveness probe: Unhealthy at each failure, then the container is killed and restarted.
    unhealthy = event_where(cluster, "sick", "Unhealthy", count=2, message="Liveness probe failed:")
    assert unhealthy.type == "Warning"
    event_where(cluster, "sick", "Killing", message="Container main failed liveness probe, will be restarted")

    # What a user reads.
    described = kubectl(cluster, "describe", "pod", "crash", "-n", ns)
    events_part = described.split("Events:", 1)[1]
    assert "Back-off restarting failed container" in events_part
    assert "kubelet" in events_part
    listed = kubectl(cluster, "get", "events", "-n", ns)
    assert "ErrImagePull" in listed
    assert "Started container main" in listed

    # The node's own events, in default: kubelet's start and the conditions it first reported.
    event_where(cluster, node, "Starting", namespace="default", kind="Node", message="Starting kubelet.")
    ready = event_where(cluster, node, "NodeReady", namespace="default", kind="Node",
                        message=f"Node {node} status is now: NodeReady")
    assert ready.involved_object.uid == node

    # Deleting a pod: its container is stopped with a Killing event.
    cluster.core.delete_namespaced_pod("ok", ns)
    event_where(cluster, "ok", "Killing", message="Stopping container main")


def upsert(node: str, key: ResourceKey, body: dict[str, Any]) -> Envelope:
    return Envelope(node=node, src="edged", group=Group.RESOURCE, op=Op.UPDATE, res=key, body=body)


def test_a_node_may_not_write_events_about_pods_or_nodes_not_its_own(cluster_factory: Any) -> None:
    node, other = node_names(2)
    cluster: Cluster = cluster_factory([node])
    ns = cluster.namespace
    theirs_uid = make_pod(cluster, other, "theirs", "sleep 3600")  # bound to a node that is not this one
    now = now_rfc3339()

    def event(name: str, ref: ObjectRef, host: str = node) -> KubeEvent:
        return KubeEvent(name, ref.namespace or "default", ref, "Warning", "BackOff", "forged", host, now, now)

    attempts = {
        "bound to": event("theirs.1", ObjectRef("Pod", "theirs", ns, theirs_uid)),
        "does not exist": event("ghost.1", ObjectRef("Pod", "ghost", ns, "ghost-uid")),
        "about its own Node": event(f"{other}.1", ObjectRef("Node", other, uid=other)),
        f"host {other}": event("theirs.2", ObjectRef("Pod", "theirs", ns, theirs_uid), host=other),
    }
    broker = cluster.cloud_broker
    with TestClient(broker.host, broker.port, username=node, password=NODE_PW) as edge:
        edge.subscribe(topics.link_down(node))
        for words, forged in attempts.items():
            reply = ask_as_node(edge, upsert(node, forged.key(), forged.as_body()))
            assert (reply.op, reply.body["code"]) == (Op.ERROR, 403), reply.body
            assert words in reply.body["reason"], reply.body
        # A bad body is refused with the field named, and nothing is written.
        bad = event("theirs.3", ObjectRef("Pod", "theirs", ns, theirs_uid))
        reply = ask_as_node(edge, upsert(node, bad.key(), {**bad.as_body(), "count": 0}))
        assert (reply.op, reply.body["code"]) == (Op.ERROR, 400), reply.body
        assert "body.count" in reply.body["reason"]
    # Every refusal above was answered in place of the write it refused: nothing forged is in the API server.
    assert not [e for e in cluster.core.list_namespaced_event(ns).items if e.message == "forged"]
    assert not [e for e in cluster.core.list_namespaced_event("default").items if e.message == "forged"]


def outbox_backoffs(cluster: Cluster, node: str, pod: str) -> list[int]:
    """The counts of the BackOff events about ``pod`` waiting in the node's outbox (read from its SQLite file)."""
    edge, _ = cluster.nodes[node]
    with contextlib.closing(sqlite3.connect(f"file:{edge.data / 'outbox.db'}?mode=ro", uri=True)) as db:
        rows = db.execute("SELECT payload FROM outbox WHERE event_type IS NOT NULL").fetchall()
    bodies = [decode(bytes(row[0])).body for row in rows]
    return [b["count"] for b in bodies if b["reason"] == "BackOff" and b["involvedObject"]["name"] == pod]


def test_events_wait_in_the_outbox_while_offline_coalesced_and_arrive_after(cluster_factory: Any) -> None:
    (node,) = node_names(1)
    cluster: Cluster = cluster_factory([node])
    make_pod(cluster, node, "crash", "exit 1")
    online = event_where(cluster, "crash", "BackOff", message="Back-off restarting failed container")
    _, link = cluster.nodes[node]
    link.down()
    # Offline, the repeats of the one BackOff Event coalesce into one outbox entry, its count growing.
    def repeated_offline() -> list[int] | None:
        found = outbox_backoffs(cluster, node, "crash")
        return found if found and max(found) >= online.count + 2 else None
    counts = wait_until(repeated_offline, timeout=EVENT_TIMEOUT_S, what="BackOff repeats waiting in the outbox")
    assert len(counts) == 1
    link.up()
    after = event_where(cluster, "crash", "BackOff", count=counts[0], message="Back-off restarting failed container")
    assert after.metadata.name == online.metadata.name
    assert len([e for e in events_of(cluster, cluster.namespace, "Pod", "crash") if e.reason == "BackOff"]) == 1
