"""A joined node's Node object, created at join time so that CloudHub replicas serve its first registration.

CloudHub replicas learn which nodes exist from the Node objects with the edge role label, and each subscribes
only to the up topics of the nodes rendezvous hashing gives it (cloud/cloudhub/replica.py). EdgeController
creates the Node when the node's registration reaches it, but that message must first be routed by a CloudHub:
a node with no Node yet is nobody's, so with replicas it could never register. The join is the moment the node's
name enters the cluster, so the join endpoint writes the Node there, with the edge role label and nothing else;
EdgeController adopts it at registration (it patches the node's own labels in and writes its status).

The alternative, every replica listening on a shared registration topic and answering only for the nodes it
would own, needs a wildcard subscription in every replica (NATS 2.9 has no MQTT shared subscriptions), so
every replica would receive every new node's traffic; creating the Node keeps one per-node subscription each.
"""

from __future__ import annotations

import logging

from cloud.kube import Kube, KubeError
from schemas.kubeobj import EDGE_ROLE_LABEL

log = logging.getLogger(__name__)


def edge_node(name: str) -> dict[str, object]:
    """The Node written for a joined node: its name and the edge role label; the status is the node's to write."""
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": {EDGE_ROLE_LABEL: ""}},
            "spec": {}}


def ensure_edge_node(kube: Kube, name: str) -> bool:
    """Create ``name``'s Node if there is none; True when this call created it. A Node that exists already (the
    node joined or registered before) is left as it is: EdgeController labels it at registration, as it always
    did."""
    if kube.get_node(name) is not None:
        return False
    try:
        kube.create_node(edge_node(name))
    except KubeError as exc:
        if exc.status != 409:  # 409: created meanwhile (the node registered, or a second join): fine
            raise
        return False
    log.info("created Node %s for the joined node, for the CloudHub replicas to serve it", name)
    return True
