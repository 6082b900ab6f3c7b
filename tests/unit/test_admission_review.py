"""The autonomy webhook's review, as a pure function: an AdmissionReview in, a JSON patch (or none) out."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from cloud.admission.review import OPT_OUT, BadReview, answer_bytes, forever_tolerations, review
from cloud.admission.webhook import AdmissionSettings, server_names, webhook_configuration

EDGE = "node-role.kubernetes.io/edge"
NODES = {"edge-1": {EDGE: ""}, "edge-2": {EDGE: ""}, "edge-out": {EDGE: "", OPT_OUT: "true"}, "cloud-1": {}}
DEFAULTS = [  # what DefaultTolerationSeconds adds to every pod
    {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
    {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
]
FOREVER = [{"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute"},
           {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute"}]


def pod(spec: dict[str, Any], annotations: dict[str, str] | None = None) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "annotations": annotations or {}},
            "spec": {"containers": [{"name": "c", "image": "busybox"}], "tolerations": DEFAULTS, **spec}}


def admission(obj: Any, operation: str = "CREATE", uid: str = "u-1") -> dict[str, Any]:
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "request": {"uid": uid, "operation": operation, "object": obj,
                        "resource": {"group": "", "version": "v1", "resource": "pods"}}}


def patch_of(obj: Any) -> list[dict[str, Any]] | None:
    answer = review(admission(obj), NODES.get)
    response = answer["response"]
    assert (answer["kind"], response["uid"], response["allowed"]) == ("AdmissionReview", "u-1", True)
    if "patch" not in response:
        return None
    assert response["patchType"] == "JSONPatch"
    return list(json.loads(base64.b64decode(response["patch"])))


def affinity(*terms: dict[str, Any]) -> dict[str, Any]:
    return {"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": list(terms)}}}}


@pytest.mark.parametrize("spec", [
    {"nodeSelector": {EDGE: ""}},
    {"nodeName": "edge-1"},
    {"nodeSelector": {"kubernetes.io/hostname": "edge-2"}},
    affinity({"matchExpressions": [{"key": EDGE, "operator": "Exists"}]}),
    affinity({"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["edge-1"]}]}),  # a DaemonSet's
    affinity({"matchExpressions": [{"key": EDGE, "operator": "Exists"}]},
             {"matchExpressions": [{"key": "kubernetes.io/hostname", "operator": "In", "values": ["edge-2"]}]}),
], ids=["selector", "nodeName", "hostname", "affinity", "daemonset", "two-terms"])
def test_edge_only_pods_tolerate_being_offline_for_ever(spec: dict[str, Any]) -> None:
    assert patch_of(pod(spec)) == [{"op": "add", "path": "/spec/tolerations", "value": FOREVER}]


@pytest.mark.parametrize(("spec", "annotations"), [
    ({}, None),  # a cloud pod
    ({"nodeName": "cloud-1"}, None),
    ({"nodeName": "nowhere"}, None),
    ({"nodeSelector": {EDGE: ""}}, {OPT_OUT: "true"}),  # the pod opts out
    ({"nodeName": "edge-out"}, None),  # its node opts out
    ({"nodeSelector": {EDGE: "", OPT_OUT: "true"}}, None),
    (affinity({"matchExpressions": [{"key": EDGE, "operator": "Exists"}]},
              {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}), None),
    (affinity({"matchExpressions": [{"key": EDGE, "operator": "DoesNotExist"}]}), None),
    (affinity({"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["edge-1", "cloud-1"]}]}), None),
], ids=["cloud", "cloud-node", "no-node", "pod-opt-out", "node-opt-out", "selects-opted-out", "mixed-terms",
        "not-edge", "mixed-names"])
def test_other_pods_are_left_alone(spec: dict[str, Any], annotations: dict[str, str] | None) -> None:
    assert patch_of(pod(spec, annotations)) is None


def test_only_the_time_limited_offline_tolerations_go() -> None:
    mine: list[dict[str, Any]] = [{"key": "dedicated", "operator": "Equal", "value": "edge", "effect": "NoSchedule"},
            {"operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 60},  # matches every taint
            {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoSchedule"},
            {"key": "node.kubernetes.io/memory-pressure", "operator": "Exists", "effect": "NoExecute",
             "tolerationSeconds": 10}]
    assert forever_tolerations([*mine, *DEFAULTS]) == [mine[0], mine[2], mine[3], *FOREVER]
    assert forever_tolerations(FOREVER) == FOREVER
    # Already for ever (a DaemonSet's pods): no patch at all.
    assert patch_of(pod({"nodeName": "edge-1", "tolerations": FOREVER})) is None
    # No tolerations yet (the webhook ran before the defaults): the forever ones are added.
    assert patch_of(pod({"nodeName": "edge-1", "tolerations": None})) == [
        {"op": "add", "path": "/spec/tolerations", "value": FOREVER}]


@pytest.mark.parametrize("operation", ["UPDATE", "DELETE", "CONNECT"])
def test_only_creation_is_changed(operation: str) -> None:
    answer = review(admission(pod({"nodeName": "edge-1"}), operation), NODES.get)
    assert answer["response"] == {"uid": "u-1", "allowed": True}


@pytest.mark.parametrize("body", [
    None, [], "text", {"kind": "AdmissionReview"},
    {"apiVersion": "admission.k8s.io/v1beta1", "kind": "AdmissionReview", "request": {"uid": "u"}},
    {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"},
    {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {"uid": ""}},
    {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": []},
])
def test_a_review_that_cannot_be_answered_is_refused(body: Any) -> None:
    with pytest.raises(BadReview):
        review(body, NODES.get)
    status, text = answer_bytes(json.dumps(body).encode(), NODES.get)
    assert status == 400
    assert text


@pytest.mark.parametrize("obj", [
    5, {"spec": []}, {"metadata": {"annotations": "x"}, "spec": {}},
    {"spec": {"nodeName": "edge-1", "tolerations": "all"}},
    {"spec": {"nodeName": "edge-1", "tolerations": [5]}},
    {"spec": {"nodeSelector": [EDGE]}},
    {"spec": affinity({"matchExpressions": "x"})},
])
def test_a_pod_that_cannot_be_read_is_allowed_unchanged_with_a_warning(obj: Any) -> None:
    response = review(admission(obj), NODES.get)["response"]
    assert response["allowed"] is True
    assert "patch" not in response
    assert response["warnings"][0].startswith("edgehive: pod left unchanged")


def test_garbage_bytes_are_refused_not_crashed_on() -> None:
    assert answer_bytes(b"\xff\x00", NODES.get)[0] == 400
    assert answer_bytes(b"{", NODES.get)[0] == 400
    status, body = answer_bytes(json.dumps(admission(pod({"nodeName": "edge-1"}))).encode(), NODES.get)
    assert status == 200
    assert json.loads(body)["response"]["patch"]


def test_the_configuration_never_blocks_pod_creation() -> None:
    config = webhook_configuration("w", {"url": "https://127.0.0.1:9443/mutate", "caBundle": "Q0E="}, 5)
    (hook,) = config["webhooks"]
    assert (hook["failurePolicy"], hook["sideEffects"], hook["admissionReviewVersions"]) == ("Ignore", "None", ["v1"])
    assert hook["rules"][0]["operations"] == ["CREATE"]
    assert hook["namespaceSelector"]["matchExpressions"][0] == {"key": OPT_OUT, "operator": "NotIn",
                                                                "values": ["true"]}
    assert server_names(AdmissionSettings(url="https://10.1.2.3:9443/mutate")) == [
        "DNS:localhost", "IP:10.1.2.3", "IP:127.0.0.1"]
    assert server_names(AdmissionSettings(service="edgehive-system/admission:443"))[0] == \
        "DNS:admission.edgehive-system"
    with pytest.raises(ValueError, match="NAMESPACE/NAME:PORT"):
        AdmissionSettings(service="admission")
