"""The pod spec real clusters produce: the kube-api-access volume (a bound service account token through the link,
the cluster CA, the namespace) and the downward API, on the real API server, brokers and podman."""

from __future__ import annotations

import base64
import json
import shutil
from typing import Any

from kubernetes import client as k8s
from podman import PodmanClient

from schemas import topics
from schemas.envelope import Envelope, Group, Op
from schemas.tokens import TokenQuery
from tests.fixtures.mqtt import TestClient
from tests.fixtures.processes import wait_until
from tests.support.cluster import NODE_INDEX_LABEL, NODE_PW, Cluster, node_names, reply_to

IMAGE = "localhost/busybox:latest"
SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
ISSUER = "https://kubernetes.default.svc.cluster.local"  # the fixture's --service-account-issuer


def kube_api_access(name: str) -> dict[str, Any]:
    """Exactly what the ServiceAccount admission plugin of a real cluster adds to every pod."""
    return {"name": name, "projected": {"defaultMode": 420, "sources": [
        {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
        {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
        {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1",
                                                                      "fieldPath": "metadata.namespace"}}]}}]}}


def identity_pod(node: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "who", "labels": {"app": "who", "tier": "a"}, "annotations": {"note": "hello"}},
            "spec": {"nodeName": node, "serviceAccountName": "robot", "terminationGracePeriodSeconds": 1,
                     "volumes": [kube_api_access("kube-api-access-abcde"),
                                 {"name": "vault-token", "projected": {"sources": [{"serviceAccountToken": {
                                     "audience": "vault", "expirationSeconds": 3600, "path": "token"}}]}},
                                 {"name": "podinfo", "downwardAPI": {"items": [
                                     {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
                                     {"path": "annotations", "fieldRef": {"fieldPath": "metadata.annotations"}},
                                     {"path": "cpu_m", "resourceFieldRef": {
                                         "containerName": "main", "resource": "limits.cpu", "divisor": "1m"}}]}}],
                     "containers": [{
                         "name": "main", "image": IMAGE, "imagePullPolicy": "IfNotPresent",
                         "command": ["sleep", "3600"],
                         "resources": {"limits": {"cpu": "250m", "memory": "64Mi"}},
                         "env": [{"name": "MEM_MI", "valueFrom": {"resourceFieldRef": {
                             "resource": "limits.memory", "divisor": "1Mi"}}},
                                 {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}}],
                         "volumeMounts": [
                             {"name": "kube-api-access-abcde", "mountPath": SA_DIR, "readOnly": True},
                             {"name": "vault-token", "mountPath": "/var/run/secrets/vault"},
                             {"name": "podinfo", "mountPath": "/etc/podinfo"}]}]}}


def running(cluster: Cluster, name: str, namespace: str | None = None) -> Any:
    pod = cluster.pod(name) if namespace is None else cluster.core.read_namespaced_pod(name, namespace)
    if pod is None or pod.status.phase != "Running":
        return None
    statuses = pod.status.container_statuses or []
    return pod if statuses and all(s.state.running for s in statuses) else None


def main_container(cluster: Cluster, pod_name: str) -> Any:
    with PodmanClient(base_url=cluster.podman.base_url) as client:
        found = [c for c in client.containers.list(filters={"label": f"io.edgehive.pod={pod_name}"})
                 if "io.edgehive.container" in c.attrs["Labels"] and c.attrs["State"] == "running"]
    return found[0] if found else None


def read(cluster: Cluster, pod_name: str, path: str) -> str | None:
    """A file's content inside the pod's running container; None while there is none."""
    return run(cluster, pod_name, ["cat", path])


def run(cluster: Cluster, pod_name: str, argv: list[str]) -> str | None:
    """What a command prints inside the pod's running container; None while there is none, or it fails."""
    container = main_container(cluster, pod_name)
    if container is None:
        return None
    code, output = container.exec_run(argv, demux=True)
    assert isinstance(output, tuple)
    return bytes(output[0] or b"").decode() if code == 0 else None


def claims(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))))


def review(cluster: Cluster, token: str, audiences: list[str] | None = None) -> Any:
    spec = k8s.V1TokenReviewSpec(token=token, audiences=audiences)
    return k8s.AuthenticationV1Api(cluster.api.client).create_token_review(k8s.V1TokenReview(spec=spec)).status


def test_kube_api_access_and_downward_api_on_an_edge_node(cluster_factory: Any) -> None:
    (node,) = node_names(1)
    cluster: Cluster = cluster_factory([node])
    core, ns = cluster.core, cluster.namespace
    # No controller-manager here: the CA ConfigMap and the ServiceAccount it would make, made by hand; the
    # ServiceAccount late, so that the pod first waits for a token it cannot get, saying why.
    ca = cluster.api.ca_file.read_text()
    core.create_namespaced_config_map(ns, k8s.V1ConfigMap(metadata=k8s.V1ObjectMeta(name="kube-root-ca.crt"),
                                                          data={"ca.crt": ca}))
    core.create_namespaced_pod(ns, identity_pod(node))
    waiting = wait_until(lambda: _waiting(cluster, "who"), timeout=30, what="the pod waiting for its token")
    assert waiting.reason == "CreateContainerConfigError"
    assert 'volume "kube-api-access-abcde"' in waiting.message
    assert 'serviceaccounts "robot" not found' in waiting.message
    core.create_namespaced_service_account(ns, k8s.V1ServiceAccount(metadata=k8s.V1ObjectMeta(name="robot")))
    pod = wait_until(lambda: running(cluster, "who"), timeout=60, what="the pod Running with its token")

    # The token: a JWT the API server takes, for the pod's service account, bound to this pod.
    token = read(cluster, "who", f"{SA_DIR}/token")
    assert token
    status = review(cluster, token)
    assert status.authenticated, status.error
    assert status.user.username == f"system:serviceaccount:{ns}:robot"
    assert status.user.extra["authentication.kubernetes.io/pod-name"] == ["who"]
    assert status.user.extra["authentication.kubernetes.io/pod-uid"] == [pod.metadata.uid]
    found = claims(token)
    assert found["aud"] == [ISSUER]
    assert found["kubernetes.io"]["pod"] == {"name": "who", "uid": pod.metadata.uid}
    # The audience a projection names is the token's, and only it.
    vault = read(cluster, "who", "/var/run/secrets/vault/token")
    assert vault
    assert claims(vault)["aud"] == ["vault"]
    assert review(cluster, vault, ["vault"]).authenticated
    assert not review(cluster, vault).authenticated
    # The CA and namespace sources beside it; the downward API.
    assert read(cluster, "who", f"{SA_DIR}/ca.crt") == ca
    assert read(cluster, "who", f"{SA_DIR}/namespace") == ns
    assert read(cluster, "who", "/etc/podinfo/labels") == 'app="who"\ntier="a"'
    assert read(cluster, "who", "/etc/podinfo/annotations") == 'note="hello"'
    assert read(cluster, "who", "/etc/podinfo/cpu_m") == "250"
    assert run(cluster, "who", ["sh", "-c", 'echo "$MEM_MI $APP"']) == "64 who\n"
    # The limits as cgroup limits, as podman applied them: 64 MiB, and 250m as kubelet's CFS quota.
    with PodmanClient(base_url=cluster.podman.base_url) as client:
        host = client.containers.get(main_container(cluster, "who").id).attrs["HostConfig"]
    assert (host["Memory"], host["CpuQuota"], host["CpuPeriod"]) == (64 * 1024 * 1024, 25_000, 100_000)

    # Labels change: the file follows, in the running container.
    core.patch_namespaced_pod("who", ns, {"metadata": {"labels": {"tier": "b"}}})
    wait_until(lambda: read(cluster, "who", "/etc/podinfo/labels") == 'app="who"\ntier="b"', timeout=20,
               what="the labels file updated in the container")

    # The link cut: a container that dies is started again with its token, from what the node kept.
    edge, link = cluster.nodes[node]
    link.down()
    before = main_container(cluster, "who")
    before.kill()
    wait_until(lambda: (c := main_container(cluster, "who")) is not None and c.id != before.id, timeout=30,
               what="the container restarted with the link down")
    assert read(cluster, "who", f"{SA_DIR}/token") == token

    # Still cut: EdgeD restarted after the pod and its volume files were lost (a reboot; kubelet keeps these
    # volumes on tmpfs): the pod is made again offline, its token from the node's keeping.
    edge.stop("edged")
    with PodmanClient(base_url=cluster.podman.base_url) as client:
        who = client.pods.get(f"{ns}_who")
        who.stop(timeout=0)  # killed, as a reboot does (and not 10 s per container waiting on SIGTERM)
        who.remove(force=True)
    shutil.rmtree(edge.data / "edged" / "pods" / pod.metadata.uid / "volumes")
    edge.start("edged")
    wait_until(lambda: read(cluster, "who", f"{SA_DIR}/token") == token, timeout=60,
               what="the token file in the pod made again offline")
    assert read(cluster, "who", "/var/run/secrets/vault/token") == vault
    link.up()
    wait_until(lambda: running(cluster, "who"), timeout=30, what="the pod Running again in the API server")


def test_env_pod_ip_is_the_address_the_api_server_shows(cluster_factory: Any) -> None:
    """status.podIP in env on a pod's own network: its sandbox starts first, so its init container and its
    container are made with the address that the pod's status reports."""
    (node,) = node_names(1)
    cluster: Cluster = cluster_factory([node])
    env = [{"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
           {"name": "POD_IPS", "valueFrom": {"fieldRef": {"fieldPath": "status.podIPs"}}}]
    work = [{"name": "work", "mountPath": "/work"}]
    cluster.core.create_namespaced_pod(cluster.namespace, {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "addr"},
        "spec": {"nodeName": node, "terminationGracePeriodSeconds": 1, "volumes": [{"name": "work", "emptyDir": {}}],
                 "initContainers": [{"name": "first", "image": IMAGE, "imagePullPolicy": "IfNotPresent", "env": env,
                                     "command": ["sh", "-c", "echo $POD_IP > /work/init-ip"], "volumeMounts": work}],
                 "containers": [{"name": "main", "image": IMAGE, "imagePullPolicy": "IfNotPresent", "env": env,
                                 "command": ["sleep", "3600"], "volumeMounts": work}]}})
    pod = wait_until(lambda: (p := running(cluster, "addr")) is not None and p.status.pod_ip and p, timeout=60,
                     what="addr Running with its address")
    address = pod.status.pod_ip
    assert address != cluster.pod("addr").status.host_ip
    assert [entry.ip for entry in pod.status.pod_ips] == [address]
    assert run(cluster, "addr", ["sh", "-c", 'echo "$POD_IP $POD_IPS"']) == f"{address} {address}\n"
    assert read(cluster, "addr", "/work/init-ip") == f"{address}\n"
    # The address is the pod's own: the container's interface has it.
    assert f"inet {address}/" in (run(cluster, "addr", ["ip", "-4", "addr"]) or "")


def test_a_pod_as_a_real_control_plane_makes_it(controlplane_cluster: Cluster, controlplane_namespace: str) -> None:
    """The ServiceAccount admission plugin adds the volume, kube-controller-manager makes the ServiceAccount
    and publishes the CA, the scheduler places the pod: nothing of it written by the test."""
    cluster, ns = controlplane_cluster, controlplane_namespace
    cluster.core.create_namespaced_pod(ns, {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "std"}, "spec": {
        "nodeSelector": {NODE_INDEX_LABEL: "1"}, "terminationGracePeriodSeconds": 1,
        "containers": [{"name": "main", "image": IMAGE, "imagePullPolicy": "IfNotPresent",
                        "command": ["sleep", "3600"]}]}})
    pod = wait_until(lambda: running(cluster, "std", ns), timeout=60, what="the standard pod Running")
    (volume,) = [v for v in pod.spec.volumes if v.name.startswith("kube-api-access-")]
    assert volume.projected.sources[0].service_account_token.path == "token"
    token = wait_until(lambda: read(cluster, "std", f"{SA_DIR}/token"), timeout=10, what="the token file")
    status = review(cluster, token)
    assert status.authenticated, status.error
    assert status.user.username == f"system:serviceaccount:{ns}:default"
    assert status.user.extra["authentication.kubernetes.io/pod-uid"] == [pod.metadata.uid]
    published = cluster.core.read_namespaced_config_map("kube-root-ca.crt", ns).data["ca.crt"]
    assert read(cluster, "std", f"{SA_DIR}/ca.crt") == published
    assert read(cluster, "std", f"{SA_DIR}/namespace") == ns


def test_a_node_gets_no_token_for_a_pod_that_is_not_its_own(cluster_factory: Any) -> None:
    (node,) = node_names(1)
    cluster: Cluster = cluster_factory([node])
    core, ns = cluster.core, cluster.namespace
    core.create_namespaced_service_account(ns, k8s.V1ServiceAccount(metadata=k8s.V1ObjectMeta(name="robot")))
    # A pod that opted out of the token (the admission plugin then adds no kube-api-access volume) just runs.
    core.create_namespaced_pod(ns, {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "plain"}, "spec": {
        "nodeName": node, "automountServiceAccountToken": False, "terminationGracePeriodSeconds": 1,
        "containers": [{"name": "main", "image": IMAGE, "imagePullPolicy": "IfNotPresent",
                        "command": ["sleep", "3600"]}]}})
    wait_until(lambda: running(cluster, "plain"), timeout=30, what="the pod without a token Running")
    assert run(cluster, "plain", ["ls", SA_DIR]) is None
    theirs = identity_pod("some-other-node")
    theirs["metadata"]["name"] = "theirs"
    theirs_uid = core.create_namespaced_pod(ns, theirs).metadata.uid
    broker = cluster.cloud_broker
    asks = {
        "not bound to node": TokenQuery(ns, "theirs", theirs_uid, "robot", (), 3607),
        "does not exist": TokenQuery(ns, "ghost", "ghost-uid", "robot", (), 3607),
    }
    with TestClient(broker.host, broker.port, username=node, password=NODE_PW) as edge:
        edge.subscribe(topics.link_down(node))
        for reason, query in asks.items():
            ask = Envelope(node=node, src="edged", group=Group.RESOURCE, op=Op.QUERY, res=query.key(),
                           body=query.as_body())
            edge.publish(topics.link_up(node), ask.encode())
            reply = reply_to(edge, ask.id)
            assert (reply.op, reply.body["code"]) == (Op.ERROR, 403), reply.body
            assert reason in reply.body["reason"]
        malformed = Envelope(node=node, src="edged", group=Group.RESOURCE, op=Op.QUERY,
                             res=asks["does not exist"].key(), body={"pod": "theirs"})
        edge.publish(topics.link_up(node), malformed.encode())
        reply = reply_to(edge, malformed.id)
        assert (reply.op, reply.body["code"]) == (Op.ERROR, 400)
        assert reply.body["reason"].startswith("body.namespace")


def _waiting(cluster: Cluster, name: str) -> Any:
    pod = cluster.pod(name)
    statuses = (pod.status.container_statuses or []) if pod is not None else []
    return statuses[0].state.waiting if statuses and statuses[0].state.waiting and \
        statuses[0].state.waiting.message else None
