"""The labels EdgeD puts on the podman pods and containers it makes: how what runs is matched to what is
desired after any restart, and how the node's stream end finds a pod's containers without asking EdgeD."""

from __future__ import annotations

LABEL_PREFIX = "io.edgehive."
NODE_LABEL = LABEL_PREFIX + "node"
UID_LABEL = LABEL_PREFIX + "uid"
NAMESPACE_LABEL = LABEL_PREFIX + "namespace"
POD_LABEL = LABEL_PREFIX + "pod"
CONTAINER_LABEL = LABEL_PREFIX + "container"
ATTEMPT_LABEL = LABEL_PREFIX + "attempt"
HASH_LABEL = LABEL_PREFIX + "spec-hash"
RESTARTS_ON_LABEL = LABEL_PREFIX + "restarts-on"  # edge/restarts.py
