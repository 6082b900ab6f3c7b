"""Events from edge nodes, written as a kubelet's recorder writes them: created, or patched for a repeat.

A node's EdgeD records kubelet's events (edge/edged/events.py) and sends each new one and each repeat (the
same Event with a higher count) through its outbox; the body is the core/v1 Event (schemas/events.py). Here
a new one is created in its namespace, a repeat patches count, lastTimestamp and message, and a repeat whose
Event is gone (the API server keeps events an hour) is created again, as kubelet's recorder does. A resend of
a count already written is answered without a write.

A node speaks only of itself: ``refusal`` (at the door, on the handler thread) refuses an Event recorded by
another host or about another Node; ``EventWriter.write`` (on a writer thread, where an API read may be
made) refuses one about a pod that is not bound to the node.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from cloud.kube import Kube, KubeError
from schemas.envelope import Envelope
from schemas.events import COMPONENT, KubeEvent
from schemas.kubeobj import meta, node_name

log = logging.getLogger(__name__)

WRITTEN_MEMORY = 4096
"""Events whose written count is remembered (a resend of an older count then costs no write)."""

PodReader = Callable[[str, str], dict[str, Any] | None]


def refusal(event: KubeEvent, node: str) -> str | None:
    """Why node ``node`` may not write ``event`` (None: it may, as far as the body tells)."""
    if event.host != node:
        return f"node {node} may only record its own events, not events of host {event.host}"
    if event.component != COMPONENT:
        return f"node {node} records events as {COMPONENT}, not as {event.component}"
    if event.involved.kind == "Node" and event.involved.name != node:
        return f"node {node} may only record events about its own Node, not about {event.involved.name}"
    return None


class EventWriter:
    """``pod(namespace, name)``: the pod as the cache or the API server has it (None when it does not exist)."""

    def __init__(self, kube: Kube, pod: PodReader, src: str) -> None:
        self.kube = kube
        self.pod = pod
        self.src = src
        self._written: dict[tuple[str, str], int] = {}
        self._lock = threading.Lock()

    def write(self, event: KubeEvent, envelope: Envelope) -> Envelope:
        """Create or patch ``event``; the answer for the node. KubeError for what the API server refused."""
        pod_refusal = self._pod_refusal(event, envelope.node)
        if pod_refusal is not None:
            log.warning("refused an event of node %s: %s", envelope.node, pod_refusal)
            return envelope.error(self.src, 403, pod_refusal)
        key = (event.namespace, event.name)
        with self._lock:
            if self._written.get(key, 0) >= event.count:
                return envelope.reply(self.src, {"ok": True, "written": False})
        if event.count == 1:
            try:
                self.kube.create_event(event.namespace, event.as_body())
            except KubeError as exc:
                if exc.status != 409:  # 409: a resend of a create that was taken
                    raise
                self.kube.patch_event(event.namespace, event.name, event.repeat_patch())
        else:
            try:
                self.kube.patch_event(event.namespace, event.name, event.repeat_patch())
            except KubeError as exc:
                if exc.status != 404:
                    raise
                # Its first occurrence was coalesced away in the outbox, or the Event expired: created whole.
                self.kube.create_event(event.namespace, event.as_body())
        with self._lock:
            if len(self._written) >= WRITTEN_MEMORY:
                self._written.pop(next(iter(self._written)))
            self._written[key] = max(event.count, self._written.get(key, 0))
        return envelope.reply(self.src, {"ok": True, "written": True})

    def _pod_refusal(self, event: KubeEvent, node: str) -> str | None:
        involved = event.involved
        if involved.kind != "Pod":
            return None
        pod = self.pod(involved.namespace or "", involved.name)
        where = f"pod {involved.namespace}/{involved.name}"
        if pod is None:
            return f"{where} does not exist: node {node} may only record events about its own pods"
        bound = node_name(pod)
        if bound != node:
            return f"{where} is bound to {bound or 'no node'}, not {node}: a node records events only of its pods"
        if involved.uid and meta(pod).uid != involved.uid:
            return f"{where} is another pod now (uid {meta(pod).uid}, not {involved.uid})"
        return None
