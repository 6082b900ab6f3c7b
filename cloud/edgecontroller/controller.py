"""EdgeController: the API server's view of edge nodes, both ways.

Down (cloud/nodesync.py): each node gets its pods and the ConfigMaps, Secrets and
PersistentVolumeClaims they use, with the PersistentVolumes those claims are bound
to; after a reconnect only the differences.

Up: node registration and status, pod status, and queries, written to (or read
from) the API server; the edge's entry is acknowledged after the write succeeded,
or refused with the reason when it cannot ever succeed.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from cloud.edgecontroller import nodehealth
from cloud.edgecontroller.events import EventWriter, refusal
from cloud.edgecontroller.lease import DURATION_S, LeaseHeld, NodeLeases
from cloud.edgecontroller.shard import GROUP, EdgeShard, check_mode
from cloud.edgecontroller.tokens import token_refusal
from cloud.errors import CloudError
from cloud.kube import Kube, KubeError
from cloud.kubeletendpoint import endpoint_repair, kubelet_endpoint
from cloud.nodesync import ANSWER_QOS_HELP, BATCH_LINGER_HELP, BATCH_LINGER_MS, NodeSync, linger_of
from cloud.placement import Change, Placement
from cloud.replicas.assignment import Handover
from cloud.replicas.elected import LeaderElectSettings
from cloud.replicas.leases import LeaseKeeper
from cloud.replicas.leasewatch import LeaseWatch
from cloud.replicas.shardloop import ShardLoop
from cloud.resyncschedule import DEFAULT_PERIOD_S
from cloud.writer import KeyedWriter
from runtime.address import Address
from runtime.bus import Bus
from runtime.component import ComponentSettings
from runtime.qos import check_qos
from schemas import kinds
from schemas.envelope import Envelope, Op, Send
from schemas.events import KubeEvent
from schemas.fields import BodyError
from schemas.kubeobj import EDGE_ROLE_LABEL, condition_states, conditions, deletion_body, meta, node_name
from schemas.reports import LeaseHeartbeat, NodeRegistration, NodeStatus, PodStatusReport
from schemas.resource import ResourceKey
from schemas.timefmt import now_rfc3339
from schemas.tokens import TokenGrant, TokenQuery

log = logging.getLogger(__name__)

MODULE = "edgecontroller"
TRANSIENT = frozenset({0, 409, 429, 500, 502, 503, 504})
SECONDARY = (kinds.CONFIGMAP, kinds.SECRET, kinds.PVC, kinds.PV)
"""What pods refer to, placed on the nodes that run them (a PersistentVolume through its claim)."""
OWNED_LISTED = 1000
"""A replica names the nodes it owns in its report up to this many (beyond, the count alone: an answer that
stays far below the largest envelope)."""


@dataclass(frozen=True)
class EdgeControllerSettings(ComponentSettings, LeaderElectSettings):
    node: str = field(default="cloud", metadata={"help": "name used on messages that concern no node"})
    broker: str = field(default="mqtt://cloud:cloud@127.0.0.1:1883", metadata={"help": "the cloud broker URL"})
    kubeconfig: str | None = field(default=None, metadata={"help": "kubeconfig file (default: in-cluster)"})
    kube_server: str | None = field(default=None, metadata={
        "help": "API server URL to use instead of the kubeconfig's (k3s writes https://127.0.0.1:6443)"})
    node_monitor_grace_s: float = field(default=nodehealth.GRACE_S, metadata={
        "help": "seconds without a heartbeat from a node before its NodeReady turns Unknown, as the "
                "controller-manager's --node-monitor-grace-period (left to it on a cluster that runs one)"})
    node_lease_s: int = field(default=DURATION_S, metadata={
        "help": "leaseDurationSeconds of the nodes' Leases in kube-node-lease (renewed at each node status)"})
    query_timeout_s: float = field(default=10.0, metadata={"help": "seconds to wait for a node's store listing"})
    resync_period_s: float = field(default=DEFAULT_PERIOD_S, metadata={
        "help": "seconds between two resyncs of a connected node besides the one at each session start (finds "
                "what the broker lost); 0: none"})
    api_writers: int = field(default=8, metadata={"help": "node and pod statuses written to the API server at once"})
    token_workers: int = field(default=2, metadata={"help": "service account tokens asked of the API server at once"})
    stream_address: str | None = field(default=None, metadata={
        "help": "HOST:PORT at which the API server reaches the cloud stream server: written as every edge node's "
                "kubelet endpoint (cloud/kubeletendpoint.py); off: nodes advertise none"})
    replica_id: str = field(default="", metadata={
        "help": "run as one of several active EdgeController replicas under this identity (a Lease in "
                "edgehive-system), acting only for the nodes it owns (cloud/edgecontroller/shard.py); empty: the "
                "only EdgeController, acting for every node. Not with --leader-elect"})
    lease_duration_s: int = field(default=10, metadata={
        "help": "a replica's Lease duration: a dead replica's nodes move to the others after this long"})
    batch_linger_ms: int = field(default=BATCH_LINGER_MS, metadata={"help": BATCH_LINGER_HELP})
    answer_qos: int = field(default=1, metadata={"help": ANSWER_QOS_HELP})

    def __post_init__(self) -> None:
        # The broker client id is made of the node name: replicas left on the default would share one id, and
        # an MQTT broker keeps one connection per id, so each would cut the others off in turn (as CloudHub's).
        check_mode(replica_id=self.replica_id, leader_elect=self.leader_elect)  # first: it names what is wrong
        if self.replica_id and self.node == "cloud":
            object.__setattr__(self, "node", f"cloud-{self.replica_id}")
        super().__post_init__()
        if self.replica_id and self.lease_duration_s < 2:
            raise ValueError(f"lease_duration_s must be at least 2, not {self.lease_duration_s}")
        linger_of(self.batch_linger_ms)
        check_qos("answer_qos", self.answer_qos)

    def replica(self) -> str | None:
        return self.replica_id or None


def keep_transition_times(new: list[dict[str, Any]], old: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    """A condition whose status did not change keeps the time it last changed, as the API promises."""
    before = {c.get("type"): c for c in old or []}
    out = []
    for condition in new or []:
        previous = before.get(condition.get("type"))
        if previous is not None and previous.get("status") == condition.get("status") and \
                previous.get("lastTransitionTime"):
            out.append({**condition, "lastTransitionTime": previous["lastTransitionTime"]})
        else:
            out.append(condition)
    return out


def same_conditions(reported: list[dict[str, Any]], current: list[dict[str, Any]] | None) -> bool:
    """Whether the Node's conditions say what the node reports, times aside (kubelet's comparison)."""
    def view(found: list[dict[str, Any]] | None) -> dict[Any, tuple[Any, Any, Any]]:
        return {c.get("type"): (c.get("status"), c.get("reason"), c.get("message")) for c in found or []}
    return view(reported) == view(current)


class EdgeController(NodeSync):
    module = MODULE

    def __init__(self, settings: EdgeControllerSettings, bus: Bus) -> None:
        self.settings = settings
        kube = Kube.connect(settings.kubeconfig, settings.kube_server)
        super().__init__(kube, Placement(), SECONDARY, bus,
                         query_timeout_s=settings.query_timeout_s, max_size=settings.max_envelope_size,
                         resync_period_s=settings.resync_period_s,
                         linger_ms=settings.batch_linger_ms, answer_qos=settings.answer_qos)
        self.writer = KeyedWriter(settings.api_writers, "api-writer")
        self.leases = NodeLeases(kube, settings.node_lease_s)
        self.controller_manager = nodehealth.ControllerManagerWatch(kube)
        self.events = EventWriter(kube, self._read_pod, MODULE)
        self._heard: dict[str, float] = {}  # node -> when (monotonic) its last heartbeat arrived
        # A TokenRequest is a call to the API server: made off the handler thread, like the writes.
        self.token_pool = ThreadPoolExecutor(settings.token_workers, thread_name_prefix="token")
        self.stream_address = None if settings.stream_address is None else Address.parse(
            settings.stream_address, what="stream address")
        self.membership: ShardLoop | None = None
        if settings.replica_id:  # one of several active replicas: it owns nothing until its Lease counts
            self.shard = EdgeShard(settings.replica_id)
            keeper = LeaseKeeper(kube, group=GROUP, identity=settings.replica_id,
                                 duration_s=settings.lease_duration_s,
                                 view=LeaseWatch(kube, GROUP, read_timeout_s=float(settings.lease_duration_s)))
            loop = ShardLoop(keeper, self.shard, self._known_nodes, self._handed,
                             on_broker=lambda: bus.connection.on_broker(settle_s=settings.lease_duration_s))
            bus.connection.on_connection_change(lambda _up: loop.wake())  # the renewal on leaving
            self.membership = loop

    def start(self) -> None:
        super().start()
        if self.membership is not None:  # after the informers: the nodes it assigns come from them
            self.membership.start()

    def close(self) -> None:
        if self.membership is not None:  # first: serve nothing, then let the others take the nodes at once
            self.membership.close()
        self.writer.close()
        self.token_pool.shutdown(wait=False, cancel_futures=True)
        super().close()

    def _known_nodes(self) -> set[str]:
        """The nodes to share among the replicas: the edge Nodes, and every node announced (a node registering
        has no Node yet). Copies taken whole (a set or dict copied in one C call), read by the membership thread."""
        return set(self.placement.edge_nodes) | set(self.sessions_known())

    def _handed(self, handover: Handover) -> None:
        """The membership thread's handover, turned into work for the reconcile thread."""
        self.hand_over(self.shard.moves(handover, sessions=self.sessions_known(), connected=self.connected_now()))

    def report(self) -> dict[str, Any]:
        """For the health answer and metrics: a replica's identity, members and the nodes it owns now, so that
        an operator (and the HA tests) can see that no node has two owners."""
        owned = self.shard.owned
        found: dict[str, Any] = {}
        if owned is not None and self.shard.assignment is not None:
            found["members"] = sorted(self.shard.assignment.members)
            found["owned_nodes"] = len(owned)
            if len(owned) <= OWNED_LISTED:
                found["owned"] = sorted(owned)
        return found

    def on_disconnected(self, node: str, session: str) -> None:
        """The node's NodeReady turns Unknown once it has been silent for the grace period (cloud/edgecontroller/
        nodehealth.py), counted from its last heartbeat; its Lease is no longer renewed from this moment."""
        delay = nodehealth.unknown_delay(self._heard.get(node), self.settings.node_monitor_grace_s, time.monotonic())
        if delay > 0:  # a timer, not synchronisation: the grace period itself
            timer = threading.Timer(delay, self._mark_unknown_later, (node, session))
            timer.daemon = True
            timer.start()
        else:
            self._mark_unknown_later(node, session)

    def on_lost(self, node: str) -> None:
        """Handed to another replica: its last heartbeat here must not shorten the grace period should it come
        back (the new owner heard it since), nor stay for every node this replica ever held."""
        self._heard.pop(node, None)

    def _mark_unknown_later(self, node: str, session: str) -> None:
        self.writer.submit(("node", node), partial(self._mark_unknown, node, session), tag="unknown")

    def _mark_unknown(self, node: str, session: str) -> bool:
        if not self.still_gone(node, session) or node not in self.placement.edge_nodes or not self.shard.owns(node):
            return True
        grace = self.settings.node_monitor_grace_s
        if self.controller_manager.active():
            log.info("node %s silent for %.0f s: its Lease is no longer renewed; the controller-manager's node "
                     "lifecycle controller marks it Unknown", node, grace)
            return True
        current = self.informers[kinds.NODE].get(None, node) or {}
        if condition_states(current).get("Ready") == "Unknown":  # a controller-manager without leader election
            return True
        unknown = nodehealth.unknown_conditions(conditions(current), now_rfc3339(), grace)
        try:
            self.kube.patch_node_status(node, {"status": {"conditions": unknown}})
            log.info("node %s: NodeReady Unknown (nothing heard for %.0f s)", node, grace)
        except KubeError as exc:
            log.warning("could not mark node %s Unknown: %s", node, exc)
        return True

    # -- up: what nodes report ----------------------------------------------------------------

    def on_edge(self, envelope: Envelope, _topic: str) -> Iterable[Send] | None:
        """Queries are answered here, from the informers' caches; writes go to the writer (cloud/writer.py),
        keyed by the object they change, and are answered once the API server has taken them. A body is parsed
        here, before it is queued: one that cannot be written is refused at once, with the field named. Another
        replica's node's envelope is dropped unanswered (``not_owned``)."""
        if self.not_owned(envelope.node):
            return None
        key = envelope.res
        if envelope.op == Op.QUERY:
            if key is not None and key.kind == kinds.SERVICEACCOUNTTOKEN:
                self.token_pool.submit(self._answer_token_query, envelope)
                return None
            return [self.reply(self._answer_query(envelope))]
        try:
            handler = self._handler(envelope)
        except Refused as exc:
            return [self.reply(envelope.error(MODULE, exc.code, exc.reason))]
        except BodyError as exc:
            return [self.reply(envelope.error(MODULE, 400, str(exc)))]
        if key is None or handler is None:
            return [self.reply(envelope.reply(MODULE, {"ignored": True}))]
        if key.kind in (kinds.NODE, kinds.NODESTATUS, kinds.LEASE):
            self._heard[envelope.node] = time.monotonic()
        target = ("pod", key.namespace, key.name) if key.kind == kinds.PODSTATUS else ("node", envelope.node)
        if key.kind == kinds.EVENT:  # one Event's writes in order, a repeat replacing its unwritten older self
            target = ("event", key.namespace, key.name)
        self.writer.submit(target, partial(self._write, envelope, handler), partial(self._ack, envelope), tag=key.kind)
        return None

    def _handler(self, envelope: Envelope) -> Callable[[Envelope], Envelope] | None:
        """The write a node's envelope asks for, with its body parsed (None: nothing to write). Raises Refused
        for a node speaking for another, BodyError for a body of the wrong shape."""
        key, node = envelope.res, envelope.node
        if key is None:
            return None
        if key.kind == kinds.NODE and envelope.op in (Op.INSERT, Op.UPDATE):
            if key.name != node:
                raise Refused(403, f"node {node} may only register itself")
            registration = NodeRegistration.parse(envelope.body)
            if registration.name not in (None, node):
                raise Refused(403, f"node {node} may only register itself")
            return partial(self._register_node, registration)
        if key.kind == kinds.NODESTATUS:
            if key.name != node:
                raise Refused(403, f"node {node} may only report its own status")
            return partial(self._node_status, NodeStatus.parse_report(envelope.body))
        if key.kind == kinds.LEASE:
            if key.name != node:
                raise Refused(403, f"node {node} may only renew its own lease")
            return partial(self._renew_only, LeaseHeartbeat.parse(envelope.body))
        if key.kind == kinds.PODSTATUS:
            return partial(self._pod_status, PodStatusReport.parse(envelope.body))
        if key.kind == kinds.EVENT:
            event = KubeEvent.parse(envelope.body, key)
            why = refusal(event, node)
            if why is not None:
                raise Refused(403, why)
            return partial(self.events.write, event)
        return None

    def _write(self, envelope: Envelope, handler: Callable[[Envelope], Envelope]) -> bool:
        """Runs on a writer thread: the write, then its answer to the node. True when the write was taken. The
        node handed to another replica while the write was queued: not written, not answered (its outbox sends it
        again, to the new owner)."""
        if self.not_owned(envelope.node):
            return False
        try:
            answer = handler(envelope)
        except Refused as exc:
            answer = envelope.error(MODULE, exc.code, exc.reason)
        except KubeError as exc:
            if exc.status in TRANSIENT:
                log.warning("%s from %s not written yet (%s); the edge will send it again", envelope.res,
                            envelope.node, exc)
                return False
            answer = envelope.error(MODULE, exc.status, exc.reason)
        self.bus.send([self.reply(answer)])
        return answer.op != Op.ERROR

    def _ack(self, envelope: Envelope) -> None:
        """Answers an entry that a newer one of the same object replaced before it was written."""
        self.bus.send([self.reply(envelope.reply(MODULE, {"ok": True, "replaced": True}))])

    def _answer_query(self, envelope: Envelope) -> Envelope:
        key = envelope.res
        if key is None or key.kind not in SECONDARY:
            return envelope.error(MODULE, 400, "only ConfigMaps, Secrets, PersistentVolumeClaims and "
                                               "PersistentVolumes can be asked for")
        if not self.placement.uses(envelope.node, key):
            return envelope.error(MODULE, 403, f"no pod on {envelope.node} uses {key}")
        obj = self.informers[key.kind].get(key.namespace, key.name)
        if obj is None:
            return envelope.error(MODULE, 404, f"{key} does not exist")
        reply = envelope.reply(MODULE, obj)
        return Envelope(node=reply.node, src=reply.src, group=reply.group, op=reply.op, res=reply.res, body=obj,
                        rv=meta(obj).resource_version or None, parent=reply.parent)

    def _answer_token_query(self, envelope: Envelope) -> None:
        """A node asks for a pod's service account token (schemas/tokens.py); the rule is token_refusal's."""
        try:
            query = TokenQuery.parse(envelope.body)
            query.check_key(envelope.res)
            pod = self.informers[kinds.POD].get(query.namespace, query.pod)
            if pod is None or token_refusal(pod, envelope.node, query) is not None:
                pod = self.kube.get_pod(query.namespace, query.pod)  # the cache may not have seen the pod yet
            refusal = token_refusal(pod, envelope.node, query)
            if refusal is not None:
                log.warning("refused node %s a token: %s", envelope.node, refusal)
                answer = envelope.error(MODULE, 403, refusal)
            else:
                token, expires = self.kube.create_pod_token(query.namespace, query.service_account, query.pod,
                                                            query.uid, query.audiences, query.expiration_seconds)
                answer = envelope.reply(MODULE, TokenGrant(token, expires).as_body())
        except BodyError as exc:
            answer = envelope.error(MODULE, 400, str(exc))
        except KubeError as exc:
            answer = envelope.error(MODULE, exc.status or 503, exc.reason)
        try:
            self.bus.send([self.reply(answer)])
        except Exception:
            log.exception("could not answer node %s's token query", envelope.node)

    def _register_node(self, registration: NodeRegistration, envelope: Envelope) -> Envelope:
        node = envelope.node
        labels = {**registration.labels, EDGE_ROLE_LABEL: ""}
        existing = self.kube.get_node(node)
        if existing is None:
            # Created with its status, as kubelet creates its Node: the API server keeps a new Node's status, and
            # a Node without one would advertise kubelet port 0 and no conditions until the next patch.
            body: dict[str, Any] = {"apiVersion": "v1", "kind": "Node",
                                    "metadata": {"name": node, "labels": labels}, "spec": {}}
            if registration.status is not None:
                body["status"] = self._status_patch(registration.status, {})
            self.kube.create_node(body)
            log.info("node %s registered", node)
        else:
            self.kube.patch_node(node, {"metadata": {"labels": labels}})
            log.info("node %s adopted (it already existed)", node)
            if registration.status is not None:
                self._write_node_status(node, registration.status, existing)
        return envelope.reply(MODULE, {"ok": True})

    def _node_status(self, status: NodeStatus, envelope: Envelope) -> Envelope:
        # The informer's cache answers for a registered node; only a node it has not seen yet costs a GET: with
        # 1,000 nodes reporting every 10 s, a GET for every status halved the statuses written per second.
        current = self.informers[kinds.NODE].get(None, envelope.node) or self.kube.get_node(envelope.node)
        if current is None:
            raise Refused(404, f"node {envelope.node} is not registered")
        self._write_node_status(envelope.node, status, current)
        self._renew_lease(envelope.node, current)
        return envelope.reply(MODULE, {"ok": True})

    def _renew_only(self, heartbeat: LeaseHeartbeat, envelope: Envelope) -> Envelope:
        """A renewal (a ``lease`` update, as KubeEdge's edge sends one): the node is heard; and if it says how its
        conditions are, a Node that shows them otherwise gets them back."""
        current = self.informers[kinds.NODE].get(None, envelope.node) or self.kube.get_node(envelope.node)
        if current is None:
            raise Refused(404, f"node {envelope.node} is not registered")
        self._renew_lease(envelope.node, current)
        self._repair_endpoint(envelope.node, current)
        self._repair_conditions(envelope.node, heartbeat, current)
        return envelope.reply(MODULE, {"ok": True})

    def _repair_conditions(self, node: str, heartbeat: LeaseHeartbeat, current: dict[str, Any]) -> None:
        """The Node's conditions as the node says they are, when they differ in status, reason or message: what
        the node lifecycle controller marked Unknown while no one renewed the Lease (this controller away for
        longer than its grace period) would otherwise stay Unknown, and the node tainted unreachable, until the
        node's next status report, minutes later. A failure is logged; the next heartbeat tries again."""
        if heartbeat.conditions is None or same_conditions(heartbeat.conditions, conditions(current)):
            return
        now = now_rfc3339()
        reported = [{**c, "lastHeartbeatTime": now} for c in heartbeat.conditions]
        try:
            self.kube.patch_node_status(node, {"status": {
                "conditions": keep_transition_times(reported, conditions(current))}})
            log.info("node %s: conditions put back as the node reports them", node)
        except KubeError as exc:
            log.warning("node %s: conditions not put back: %s", node, exc)

    def _repair_endpoint(self, node: str, current: dict[str, Any]) -> None:
        """A node heard between two statuses whose Node does not advertise this EdgeController's stream server
        (written by one with another, or none) gets it now (cloud/kubeletendpoint.py's endpoint_repair). A
        failure is logged, not refused: the heartbeat itself was taken, and the next one tries again."""
        repair = endpoint_repair(current.get("status") or {}, self.stream_address)
        if repair is None:
            return
        try:
            self.kube.patch_node_status(node, {"status": repair})
            log.info("node %s: kubelet endpoint set to the stream server %s", node, self.stream_address)
        except KubeError as exc:
            log.warning("node %s: kubelet endpoint not set: %s", node, exc)

    def _renew_lease(self, node: str, current: dict[str, Any]) -> None:
        """The node's heartbeat renews its Lease (cloud/edgecontroller/lease.py), while its link is up: a status
        that waited in the edge's outbox through an outage is written, but renews nothing once the link is down.
        A failed renewal is logged, not refused: the status itself was written, and the next heartbeat renews."""
        if not self.is_connected(node):
            return
        try:
            if self.leases.renew(node, meta(current).uid):
                self.bus.counters.inc("lease_renewals")
        except (KubeError, LeaseHeld) as exc:
            self.bus.counters.inc("lease_renewals_failed")
            log.warning("node %s: Lease not renewed: %s", node, exc)

    def _write_node_status(self, node: str, status: NodeStatus, current: dict[str, Any]) -> None:
        """``current``: the Node as last read (its conditions keep their transition times)."""
        self.kube.patch_node_status(node, {"status": self._status_patch(status, current)})

    def _status_patch(self, status: NodeStatus, current: dict[str, Any]) -> dict[str, Any]:
        """The Node status ``status`` reports, with this controller's kubelet endpoint, heartbeat times of now and
        the transition times ``current`` (the Node as last read, or {}) already holds."""
        now = now_rfc3339()
        reported = [{**c, "lastHeartbeatTime": now} for c in status.conditions]
        patch: dict[str, Any] = kubelet_endpoint(dict(status.fields), self.stream_address)
        patch["conditions"] = keep_transition_times(reported, conditions(current))
        return patch

    def _read_pod(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The pod from the informer's cache, or the API server when the cache has not seen it (yet)."""
        return self.informers[kinds.POD].get(namespace, name) or self.kube.get_pod(namespace, name)

    def _pod_status(self, report: PodStatusReport, envelope: Envelope) -> Envelope:
        key = envelope.res
        assert key is not None
        pod = self._read_pod(key.namespace or "", key.name)
        pod_meta = meta(pod)
        if pod is None or (report.uid and pod_meta.uid != report.uid):
            # Unknown here: the node runs something the cluster no longer has. Tell it to stop.
            gone = ResourceKey(key.namespace, kinds.POD, key.name)
            self.send([Change(envelope.node, Op.DELETE, gone, "0", deletion_body(gone, report.uid))])
            return envelope.reply(MODULE, {"ok": True, "note": "no such pod; asked the node to remove it"})
        if node_name(pod) != envelope.node:
            raise Refused(403, f"pod {key.namespace}/{key.name} is not bound to {envelope.node}")
        patch = status_patch(report.status, conditions(pod))
        self.kube.patch_pod_status(key.namespace or "", key.name, {"status": patch})
        if pod_meta.deletion_timestamp and report.all_stopped:
            self.kube.delete_pod_now(key.namespace or "", key.name, pod_meta.uid or "")
            log.info("pod %s/%s stopped on %s: deletion completed", key.namespace, key.name, envelope.node)
        return envelope.reply(MODULE, {"ok": True})


def status_patch(status: dict[str, Any], current_conditions: list[dict[str, Any]]) -> dict[str, Any]:
    """The pod's status as the node reports it, for a JSON merge patch (Kube.patch_pod_status).

    The node's lists are the whole truth: a merge patch replaces them. A strategic merge
    added list items by their key instead, so a pod that got a new address (its sandbox
    made again after a power cut) kept the old one beside it; the API server refuses two
    addresses of one family, and no status of that pod could be written again. (A
    strategic ``$patch: replace`` item is kept by this API server as an empty element.)
    An address the node no longer reports is removed (null).
    """
    patch = dict(status)
    patch["conditions"] = keep_transition_times(status.get("conditions") or [], current_conditions)
    if not patch.get("podIP"):
        patch["podIP"] = None
        patch["podIPs"] = None
    return patch


class Refused(CloudError):
    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason
