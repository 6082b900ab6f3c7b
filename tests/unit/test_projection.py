"""The downward API and service account token projections, as kubelet writes them (edge/edged/projection.py)."""

from __future__ import annotations

from typing import Any

import pytest

from edge.edged.podspec import ConfigError, PodSpecError, plan_pod
from edge.edged.projection import NodeSide, TokenUnavailable, format_map, resource_value
from schemas.podrefs import config_refs
from schemas.resource import ResourceKey
from schemas.tokens import TokenQuery

CA = ResourceKey("ns", "configmap", "kube-root-ca.crt")
CONFIG = {CA: {"data": {"ca.crt": "-----BEGIN CERTIFICATE-----\n"}}}
SIDE = NodeSide("10.0.0.7", {"cpu": 4.0, "memory": 8 * 2**30, "ephemeral-storage": 100 * 10**9})

KUBE_API_ACCESS = {"name": "kube-api-access-x1y2z", "projected": {"defaultMode": 420, "sources": [
    {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
    {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
    {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1",
                                                                  "fieldPath": "metadata.namespace"}}]}}]}}


def pod(*volumes: dict[str, Any], **container: Any) -> dict[str, Any]:
    spec = container.pop("spec", {})
    c = {"name": "main", "image": "localhost/busybox:1", **container}
    return {"metadata": {"name": "p", "namespace": "ns", "uid": "u-1", "resourceVersion": "5",
                         "labels": {"app": "web", "tier": "front"},
                         "annotations": {"note": 'say "hi"\n', "a": "1"}},
            "spec": {"serviceAccountName": "robot", "containers": [c], "volumes": list(volumes), **spec}}


class Tokens:
    """A token source that remembers what it was asked."""

    def __init__(self) -> None:
        self.asked: list[tuple[TokenQuery, str]] = []

    def __call__(self, query: TokenQuery, volume: str) -> bytes:
        self.asked.append((query, volume))
        return b"header.payload.signature"


def files(plan_pod_result: Any, volume: str) -> dict[str, tuple[bytes, int]]:
    found = plan_pod_result.volumes[volume].files
    assert found is not None
    return dict(found.files)


def test_the_kube_api_access_volume_of_real_clusters() -> None:
    tokens = Tokens()
    plan = plan_pod(pod(KUBE_API_ACCESS), "edge-1", CONFIG.get, NodeSide("10.0.0.7", {}, tokens))
    assert files(plan, "kube-api-access-x1y2z") == {
        "token": (b"header.payload.signature", 0o644), "ca.crt": (b"-----BEGIN CERTIFICATE-----\n", 0o644),
        "namespace": (b"ns", 0o644)}
    assert tokens.asked == [(TokenQuery("ns", "p", "u-1", "robot", (), 3607), "kube-api-access-x1y2z")]
    assert plan.config_refs == {CA}
    # The cloud sends the CA's ConfigMap to the node because the pod refers to it.
    assert CA in config_refs(pod(KUBE_API_ACCESS))


def test_token_audience_and_default_service_account() -> None:
    tokens = Tokens()
    volume = {"name": "v", "projected": {"sources": [
        {"serviceAccountToken": {"audience": "vault", "expirationSeconds": 7200, "path": "vault/token"}}]}}
    bare = pod(volume)
    del bare["spec"]["serviceAccountName"]
    plan = plan_pod(bare, "edge-1", CONFIG.get, NodeSide(tokens=tokens))
    assert set(files(plan, "v")) == {"vault/token"}
    assert tokens.asked[0][0] == TokenQuery("ns", "p", "u-1", "default", ("vault",), 7200)


def test_a_token_not_obtained_keeps_the_pod_waiting_with_the_volume_named() -> None:
    def unavailable(_query: TokenQuery, volume: str) -> bytes:
        raise TokenUnavailable(f'MountVolume.SetUp failed for volume "{volume}": the cloud link is down')

    with pytest.raises(ConfigError, match='volume "kube-api-access-x1y2z": the cloud link is down') as caught:
        plan_pod(pod(KUBE_API_ACCESS), "edge-1", CONFIG.get, NodeSide(tokens=unavailable))
    assert caught.value.reason == "CreateContainerConfigError"
    with pytest.raises(ConfigError, match="no way to get service account tokens"):
        plan_pod(pod(KUBE_API_ACCESS), "edge-1", CONFIG.get)


def test_a_token_shorter_than_the_api_allows_is_refused() -> None:
    volume = {"name": "v", "projected": {"sources": [{"serviceAccountToken": {"expirationSeconds": 60,
                                                                               "path": "t"}}]}}
    with pytest.raises(PodSpecError, match="expirationSeconds must be at least 600"):
        plan_pod(pod(volume), "edge-1", CONFIG.get, NodeSide(tokens=Tokens()))


def test_downward_api_volume_fields() -> None:
    volume = {"name": "info", "downwardAPI": {"defaultMode": 0o440, "items": [
        {"path": "name", "fieldRef": {"fieldPath": "metadata.name"}},
        {"path": "uid", "fieldRef": {"fieldPath": "metadata.uid"}},
        {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
        {"path": "annotations", "fieldRef": {"fieldPath": "metadata.annotations"}, "mode": 0o400},
        {"path": "app", "fieldRef": {"fieldPath": "metadata.labels['app']"}},
        {"path": "mem", "resourceFieldRef": {"containerName": "main", "resource": "limits.memory",
                                             "divisor": "1Mi"}}]}}
    plan = plan_pod(pod(volume, resources={"limits": {"memory": "64Mi"}}), "edge-1", CONFIG.get, SIDE)
    assert files(plan, "info") == {
        "name": (b"p", 0o440), "uid": (b"u-1", 0o440), "labels": (b'app="web"\ntier="front"', 0o440),
        "annotations": (b'a="1"\nnote="say \\"hi\\"\\n"', 0o400), "app": (b"web", 0o440), "mem": (b"64", 0o440)}
    assert plan.volumes["info"].kind == "configMap"  # files, mounted read-only, rewritten when the pod changes


def test_labels_file_follows_the_pod_object() -> None:
    volume = {"name": "info", "downwardAPI": {"items": [{"path": "labels", "fieldRef": {"fieldPath":
                                                                                         "metadata.labels"}}]}}
    changed = pod(volume)
    changed["metadata"]["labels"] = {"app": "web", "tier": "back"}
    assert files(plan_pod(changed, "edge-1", CONFIG.get, SIDE), "info")["labels"][0] == b'app="web"\ntier="back"'


def test_format_map_quotes_as_go_does() -> None:
    assert format_map({"b": "x\ty", "a": "\x01\\", "c": "é"}) == 'a="\\x01\\\\"\nb="x\\ty"\nc="é"'
    assert format_map({}) == ""


@pytest.mark.parametrize(("resource", "divisor", "resources", "expected"), [
    ("limits.cpu", None, {"limits": {"cpu": "250m"}}, "1"),  # rounded up, as kubelet does
    ("limits.cpu", "1m", {"limits": {"cpu": "250m"}}, "250"),
    ("requests.cpu", "1m", {"requests": {"cpu": "0.1"}}, "100"),
    ("limits.cpu", None, {}, "4"),  # no limit: the node's allocatable
    ("limits.memory", None, {}, str(8 * 2**30)),
    ("limits.memory", "1Mi", {"limits": {"memory": "1G"}}, "954"),
    ("requests.memory", None, {}, "0"),
    ("limits.ephemeral-storage", "1G", {}, "100"),
    ("requests.ephemeral-storage", "1Ki", {"requests": {"ephemeral-storage": "2Mi"}}, "2048"),
])
def test_resource_field_ref(resource: str, divisor: str | None, resources: dict[str, Any], expected: str) -> None:
    subject = pod(resources=resources)
    assert resource_value(subject, "main", {"resource": resource, "divisor": divisor}, SIDE) == expected


def test_env_field_and_resource_refs() -> None:
    env = [{"name": "LIMIT", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1Mi"}}},
           {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
           {"name": "NOTE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.annotations['a']"}}},
           {"name": "HOST", "valueFrom": {"fieldRef": {"fieldPath": "status.hostIP"}}},
           {"name": "SA", "valueFrom": {"fieldRef": {"fieldPath": "spec.serviceAccountName"}}},
           {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}]
    plan = plan_pod(pod(env=env, resources={"limits": {"memory": "32Mi"}}), "edge-1", CONFIG.get, SIDE)
    assert plan.containers[0].env == {"LIMIT": "32", "APP": "web", "NOTE": "1", "HOST": "10.0.0.7", "SA": "robot",
                                      "NODE": "edge-1"}


def test_pod_ip_in_env_is_the_nodes_on_the_host_network_and_filled_at_creation_otherwise() -> None:
    env = [{"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
           {"name": "IPS", "valueFrom": {"fieldRef": {"fieldPath": "status.podIPs"}}},
           {"name": "LATER", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
           {"name": "LATER", "value": "plain"}]  # the last entry of a name wins, as in kubelet
    plan = plan_pod(pod(env=env, spec={"hostNetwork": True}), "edge-1", CONFIG.get, SIDE)
    assert plan.containers[0].env == {"IP": "10.0.0.7", "IPS": "10.0.0.7", "LATER": "plain"}
    assert plan.containers[0].pod_ip_env == ()
    plan = plan_pod(pod(env=env), "edge-1", CONFIG.get, SIDE)
    assert plan.containers[0].pod_ip_env == ("IP", "IPS")
    assert plan.containers[0].env["LATER"] == "plain"


@pytest.mark.parametrize(("item", "message"), [
    ({"path": "x", "fieldRef": {"fieldPath": "spec.nodeName"}}, "fieldRef 'spec.nodeName' is not supported in vol"),
    ({"path": "x", "resourceFieldRef": {"containerName": "ghost", "resource": "limits.cpu"}}, "container 'ghost'"),
    ({"path": "x", "resourceFieldRef": {"containerName": "main", "resource": "limits.gpu"}}, "'limits.gpu' is not"),
    ({"path": "x", "resourceFieldRef": {"containerName": "main", "resource": "limits.cpu", "divisor": "lots"}},
     "divisor 'lots'"),
    ({"path": "x"}, "neither fieldRef nor resourceFieldRef"),
    ({"path": "../x", "fieldRef": {"fieldPath": "metadata.name"}}, "must be relative"),
])
def test_bad_downward_items_name_the_volume(item: dict[str, Any], message: str) -> None:
    with pytest.raises(PodSpecError, match=message) as caught:
        plan_pod(pod({"name": "info", "downwardAPI": {"items": [item]}}), "edge-1", CONFIG.get, SIDE)
    assert "volume info" in caught.value.message or "must be relative" in caught.value.message


def test_a_pod_without_a_token_volume_needs_no_token() -> None:
    """automountServiceAccountToken: false leaves the pod without a token volume: nothing to get."""
    bare = pod()
    bare["spec"]["automountServiceAccountToken"] = False
    plan = plan_pod(bare, "edge-1", CONFIG.get, NodeSide())
    assert plan.volumes == {}
