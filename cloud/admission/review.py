"""The webhook's decision, as a pure function: an AdmissionReview in, an AdmissionReview with a JSON patch out.

Why: when an edge node's link is down for longer than the node monitor grace period, the
controller-manager taints it ``node.kubernetes.io/unreachable:NoExecute``; the taint manager then
evicts every pod whose tolerations do not cover the taint for ever, and their controllers create
replacements elsewhere (or nowhere: an edge pod has nowhere else to go). The node itself keeps the
pods running throughout (offline autonomy), so the eviction only destroys what still works.

The API server's DefaultTolerationSeconds plugin gives every pod ``unreachable`` and ``not-ready``
NoExecute tolerations of 300 s. The taint manager evicts after the SHORTEST matching
tolerationSeconds, so a forever toleration beside them changes nothing: they are replaced. And a
pod's tolerations can later be added to but never removed, so this happens at CREATE or not at all.
This works on any cluster (no API server flag), since a webhook is registered through the API.

Which pods: those that can only run on edge nodes (``spec.nodeName`` of an edge node; a nodeSelector
or every required node affinity term needing ``node-role.kubernetes.io/edge``, or naming only edge
nodes, as a DaemonSet's pods do). Opt-outs, for users who want eviction after all:
- the pod annotation (or label) ``edgehive.io/evict-when-offline: "true"``;
- the same label on a namespace (the webhook is then not even called for its pods);
- the same label on a node, for pods whose node is known at creation (nodeName, a DaemonSet's
  pods, a kubernetes.io/hostname selector) or whose selector asks for nodes with that label. A pod
  that any edge node may take is not yet on a node when it is created: its template carries the
  annotation instead.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from cloud.errors import CloudError

EDGE_ROLE_LABEL = "node-role.kubernetes.io/edge"
OPT_OUT = "edgehive.io/evict-when-offline"
OFFLINE_TAINTS = ("node.kubernetes.io/unreachable", "node.kubernetes.io/not-ready")
HOSTNAME_LABEL = "kubernetes.io/hostname"

NodeLabels = Callable[[str], Mapping[str, str] | None]
"""A node's labels by name; None when there is no such node."""


class BadReview(CloudError, ValueError):
    """The request is not an AdmissionReview this webhook can answer; the message says why."""


@dataclass(frozen=True)
class Decision:
    tolerations: list[dict[str, Any]] | None
    """The pod's new tolerations; None to leave the pod as it is."""
    why: str


def _map(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise BadReview(f"{where} must be a map, not {type(value).__name__}")
    return value


def _list(value: Any, where: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise BadReview(f"{where} must be a list, not {type(value).__name__}")
    return value


def _opted_out(labels: Mapping[str, Any] | None) -> bool:
    return str((labels or {}).get(OPT_OUT, "")).lower() == "true"


def _term_targets(term: dict[str, Any], where: str) -> tuple[bool, set[str]]:
    """(needs the edge label, node names it is limited to) of one required node selector term."""
    edge, names = False, set()
    for index, item in enumerate(_list(term.get("matchExpressions"), f"{where}.matchExpressions")):
        requirement = _map(item, f"{where}.matchExpressions[{index}]")
        key, operator = requirement.get("key"), requirement.get("operator")
        if key == EDGE_ROLE_LABEL and operator in ("Exists", "In"):
            edge = True
        if key == HOSTNAME_LABEL and operator == "In":
            names |= {str(v) for v in _list(requirement.get("values"), f"{where}.values")}
    for index, item in enumerate(_list(term.get("matchFields"), f"{where}.matchFields")):
        field = _map(item, f"{where}.matchFields[{index}]")
        if field.get("key") == "metadata.name" and field.get("operator") == "In":
            names |= {str(v) for v in _list(field.get("values"), f"{where}.values")}
    return edge, names


def edge_only(spec: dict[str, Any], nodes: NodeLabels) -> tuple[bool, str]:
    """Whether the pod can only run on edge nodes, and why (or why not); node-level opt-outs included."""
    named: set[str] = set()
    node_name = spec.get("nodeName")
    selector = {str(k): str(v) for k, v in _map(spec.get("nodeSelector"), "spec.nodeSelector").items()}
    if _opted_out(selector):
        return False, f"its nodeSelector asks for nodes labelled {OPT_OUT}=true"
    edge_selected = EDGE_ROLE_LABEL in selector
    if node_name:
        named = {str(node_name)}
    elif HOSTNAME_LABEL in selector:
        named = {selector[HOSTNAME_LABEL]}
    affinity = _map(_map(spec.get("affinity"), "spec.affinity").get("nodeAffinity"), "spec.affinity.nodeAffinity")
    required = _map(affinity.get("requiredDuringSchedulingIgnoredDuringExecution"), "required node affinity")
    terms = _list(required.get("nodeSelectorTerms"), "nodeSelectorTerms")
    if terms and not named and not edge_selected:
        found = [_term_targets(_map(t, f"nodeSelectorTerms[{i}]"), f"nodeSelectorTerms[{i}]")
                 for i, t in enumerate(terms)]
        if all(edge for edge, _ in found):
            edge_selected = True
        elif all(edge or names for edge, names in found):
            named = set().union(*(names for edge, names in found if not edge))
            edge_selected = any(edge for edge, _ in found)
        else:
            return False, "a required node affinity term allows non-edge nodes"
    if named:
        for name in sorted(named):
            labels = nodes(name)
            if labels is None or EDGE_ROLE_LABEL not in labels:
                return False, f"node {name} is not an edge node"
            if _opted_out(labels):
                return False, f"node {name} is labelled {OPT_OUT}=true"
        return True, f"it runs on edge node{'s' if len(named) > 1 else ''} {', '.join(sorted(named))}"
    if edge_selected:
        return True, f"it selects {EDGE_ROLE_LABEL}"
    return False, "it may run on nodes that are not edge nodes"


def _covers_offline_taint(toleration: dict[str, Any]) -> bool:
    if toleration.get("effect") not in (None, "", "NoExecute"):
        return False
    key = toleration.get("key")
    return key in OFFLINE_TAINTS or (not key and toleration.get("operator") == "Exists")


def forever_tolerations(tolerations: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The tolerations with every time-limited one that matches the unreachable or not-ready taint removed, and
    forever ones for both taints where there were none."""
    kept = [t for t in tolerations if not (_covers_offline_taint(t) and t.get("tolerationSeconds") is not None)]
    for key in OFFLINE_TAINTS:
        if not any(t.get("key") == key and t.get("effect") in (None, "", "NoExecute") and t.get("operator") == "Exists"
                   for t in kept):
            kept.append({"key": key, "operator": "Exists", "effect": "NoExecute"})
    return kept


def decide(pod: dict[str, Any], nodes: NodeLabels) -> Decision:
    metadata = _map(pod.get("metadata"), "object.metadata")
    if _opted_out(_map(metadata.get("annotations"), "metadata.annotations")) or \
            _opted_out(_map(metadata.get("labels"), "metadata.labels")):
        return Decision(None, f"the pod asks for eviction ({OPT_OUT}: \"true\")")
    spec = _map(pod.get("spec"), "object.spec")
    edge, why = edge_only(spec, nodes)
    if not edge:
        return Decision(None, why)
    tolerations = [_map(t, f"spec.tolerations[{i}]") for i, t in enumerate(_list(spec.get("tolerations"),
                                                                                "spec.tolerations"))]
    new = forever_tolerations(tolerations)
    if new == tolerations:
        return Decision(None, f"{why}; it tolerates being offline for ever already")
    return Decision(new, why)


def review(body: Any, nodes: NodeLabels) -> dict[str, Any]:
    """The answer to one AdmissionReview (admission.k8s.io/v1). Raises BadReview for a review with no request
    or uid: nothing can be answered to it. A pod that cannot be read is allowed unchanged, with a warning: the
    API server validates pods itself, and this webhook must never be why a pod cannot be created."""
    review_map = _map(body, "the AdmissionReview")
    if review_map.get("kind") != "AdmissionReview" or review_map.get("apiVersion") != "admission.k8s.io/v1":
        raise BadReview("expected an admission.k8s.io/v1 AdmissionReview")
    request = _map(review_map.get("request"), "request")
    uid = request.get("uid")
    if not isinstance(uid, str) or not uid:
        raise BadReview("the AdmissionReview has no request.uid")
    response: dict[str, Any] = {"uid": uid, "allowed": True}
    resource = _map(request.get("resource"), "request.resource")
    if request.get("operation") != "CREATE" or resource.get("resource") != "pods" or request.get("subResource"):
        return _answer(response)
    try:
        decision = decide(_map(request.get("object"), "request.object"), nodes)
    except BadReview as exc:
        response["warnings"] = [f"edgehive: pod left unchanged: {exc}"]
        return _answer(response)
    if decision.tolerations is not None:
        patch = [{"op": "add", "path": "/spec/tolerations", "value": decision.tolerations}]
        response["patchType"] = "JSONPatch"
        response["patch"] = base64.b64encode(json.dumps(patch).encode()).decode()
    return _answer(response)


def _answer(response: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response}


def answer_bytes(raw: bytes, nodes: NodeLabels) -> tuple[int, bytes]:
    """HTTP status and body for a request body: 200 and the review's answer, or 400 and why it is refused."""
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        return 400, f"the request body is not JSON: {exc}".encode()
    try:
        return 200, json.dumps(review(body, nodes)).encode()
    except BadReview as exc:
        return 400, str(exc).encode()
