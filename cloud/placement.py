"""Which objects each edge node must hold, and what to send it when that changes. No I/O here.

A node holds its primary objects (pods, or devices), those bound to it by
``spec.nodeName``, and the secondary objects they refer to (ConfigMaps, Secrets
and PersistentVolumeClaims, or DeviceModels), with what those refer to in turn
(the PersistentVolume a claim is bound to), and nothing else: when the last pod
using a Secret leaves a node, the Secret is deleted there too (KubeEdge keeps
sending it forever). ``sent`` is what this controller last queued for each node;
after a reconnect it is replaced by what the node reports it holds, so only the
differences travel.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cloud.packed import Packed
from schemas import kinds
from schemas.devices import Device
from schemas.envelope import Op
from schemas.kubeobj import EDGE_ROLE_LABEL, deletion_body, meta, node_name
from schemas.podrefs import config_refs
from schemas.resource import ResourceKey, newer_version
from schemas.volumeclaims import Claim

REMOVED_KEPT = 1000
"""Objects remembered per node as deleted there while they lived on (``Placement.removed``): enough for a node's
pods coming and going between two deletions of what they used; an object forgotten sooner is at worst brought
back by a late redelivery until the next periodic resync."""


@dataclass(frozen=True)
class Change:
    node: str
    op: Op
    key: ResourceKey
    rv: str
    body: dict[str, Any]


def key_of(kind: str, obj: dict[str, Any]) -> ResourceKey:
    found = meta(obj)
    return ResourceKey(found.namespace if kind != kinds.NODE else None, kind, str(found.name))


Refs = Callable[[dict[str, Any]], frozenset[ResourceKey]]
SecondaryRefs = Callable[[str, dict[str, Any]], frozenset[ResourceKey]]
"""(kind, object) -> what a secondary object refers to in turn."""

REFERRING_KINDS = frozenset({kinds.PVC})
"""Secondary kinds whose objects refer to further objects (volume_refs)."""


def volume_refs(kind: str, obj: dict[str, Any]) -> frozenset[ResourceKey]:
    """The PersistentVolume a claim names in ``spec.volumeName`` (the PV is cluster-scoped, and only the claim
    says which node needs it)."""
    if kind != kinds.PVC:
        return frozenset()
    key = Claim.view(obj).volume_key()
    return frozenset({key}) if key is not None else frozenset()


def model_refs(device: dict[str, Any]) -> frozenset[ResourceKey]:
    """The DeviceModel a Device uses."""
    found = Device.view(device)
    try:
        return frozenset({ResourceKey(found.meta.namespace, kinds.DEVICEMODEL, found.model)}) if found.model else \
            frozenset()
    except ValueError:
        return frozenset()


class Placement:
    def __init__(self, primary: str = kinds.POD, refs: Refs = config_refs,
                 secondary_refs: SecondaryRefs = volume_refs) -> None:
        self.primary = primary
        self.refs = refs
        self.secondary_refs = secondary_refs
        self.onward_refs: dict[ResourceKey, frozenset[ResourceKey]] = {}  # a claim -> its volume
        self.referrers: dict[ResourceKey, set[ResourceKey]] = {}  # a volume -> the claims that name it
        self.edge_nodes: set[str] = set()
        self.pods: dict[ResourceKey, Packed] = {}
        self.pod_node: dict[ResourceKey, str] = {}
        self.pods_by_node: dict[str, set[ResourceKey]] = {}
        self.configs: dict[ResourceKey, Packed] = {}
        self.pod_refs: dict[ResourceKey, frozenset[ResourceKey]] = {}
        self.node_refs: dict[str, Counter[ResourceKey]] = {}  # how many of the node's pods use each object
        self.sent: dict[str, dict[ResourceKey, tuple[str, str | None]]] = {}
        self.removed: dict[str, dict[ResourceKey, tuple[str, str | None]]] = {}
        """Per node, objects deleted there at the last version sent because they no longer belonged on it while
        they lived on in the API (at most REMOVED_KEPT a node, the oldest forgotten first). Such a delete lets the
        same version back in, so a broker's late redelivery of the last update brings the object back; when the
        object is then deleted in the API, the node gets a delete at the deletion's version (see changes), whose
        tombstone refuses it for good."""
        self._deleted: tuple[ResourceKey, str] | None = None
        """The object of the last event if it was deleted, and the deletion's resourceVersion (a watch's DELETED
        carries it): its deletes go out at that version rather than the last one sent (see changes)."""

    # -- events ------------------------------------------------------------------------

    def on_node(self, event: str, obj: dict[str, Any]) -> set[str]:
        found = meta(obj)
        name = str(found.name)
        is_edge = event != "DELETED" and EDGE_ROLE_LABEL in found.labels
        if is_edge and name not in self.edge_nodes:
            self.edge_nodes.add(name)
            return {name}
        if not is_edge and name in self.edge_nodes:
            self.edge_nodes.discard(name)
            self.sent.pop(name, None)
            self.removed.pop(name, None)
        return set()

    def on_primary(self, event: str, obj: dict[str, Any], packed: Packed | None = None) -> set[str]:
        """``packed``: the object as an informer already keeps it, to share rather than pack again."""
        key = key_of(self.primary, obj)
        self._note_deletion(event, key, obj)
        affected: set[str] = set()
        old_node = self.pod_node.pop(key, None)
        if old_node is not None:
            self.pods_by_node.get(old_node, set()).discard(key)
            self.node_refs.get(old_node, Counter()).subtract(self.pod_refs.pop(key, frozenset()))
            self.node_refs[old_node] += Counter()  # drop the zero counts
            affected.add(old_node)
        self.pods.pop(key, None)
        node = node_name(obj)
        if event != "DELETED" and node:
            self.pods[key] = packed or Packed.of(obj)
            self.pod_node[key] = node
            self.pods_by_node.setdefault(node, set()).add(key)
            refs = self.refs(obj)
            self.pod_refs[key] = refs
            self.node_refs.setdefault(node, Counter()).update(refs)
            affected.add(node)
        return affected & self.edge_nodes

    def on_secondary(self, kind: str, event: str, obj: dict[str, Any], packed: Packed | None = None) -> set[str]:
        key = key_of(kind, obj)
        self._note_deletion(event, key, obj)
        for ref in self.onward_refs.pop(key, frozenset()):
            self.referrers[ref].discard(key)
            if not self.referrers[ref]:
                del self.referrers[ref]
        if event == "DELETED":
            self.configs.pop(key, None)
        else:
            self.configs[key] = packed or Packed.of(obj)
            refs = self.secondary_refs(kind, obj)
            if refs:
                self.onward_refs[key] = refs
                for ref in refs:
                    self.referrers.setdefault(ref, set()).add(key)
        return {node for node in self.edge_nodes if self.uses(node, key)}

    def _note_deletion(self, event: str, key: ResourceKey, obj: dict[str, Any]) -> None:
        rv = meta(obj).resource_version
        self._deleted = (key, rv) if event == "DELETED" and rv else None

    def _delete_version(self, key: ResourceKey, sent_rv: str) -> str:
        """The version a delete of ``key`` goes out at: the deletion's own when ``key`` was just deleted in the
        API (newer than anything sent, so the node's tombstone refuses every earlier update of it that a broker
        redelivers late, the last one included), else the last version sent (the object lives on and merely no
        longer belongs on the node: the same version coming back must be let in again)."""
        if self._deleted is not None and self._deleted[0] == key and newer_version(self._deleted[1], sent_rv):
            return self._deleted[1]
        return sent_rv

    # -- what a node should hold -------------------------------------------------------------

    def _refs(self, node: str) -> list[ResourceKey]:
        direct = [k for k, n in self.node_refs.get(node, Counter()).items() if n > 0]
        return direct + [ref for k in direct for ref in self.onward_refs.get(k, ())]

    def desired(self, node: str) -> dict[ResourceKey, Packed]:
        if node not in self.edge_nodes:
            return {}
        out = {k: self.pods[k] for k in self.pods_by_node.get(node, ())}
        for ref in self._refs(node):
            obj = self.configs.get(ref)
            if obj is not None:
                out[ref] = obj
        return out

    def uses(self, node: str, key: ResourceKey) -> bool:
        """Whether ``node`` may read ``key`` (a query from the edge is answered only then): one of its pods
        refers to it, or to a claim bound to it."""
        if node not in self.edge_nodes:
            return False
        counts = self.node_refs.get(node, Counter())
        return counts[key] > 0 or any(counts[claim] > 0 for claim in self.referrers.get(key, ()))

    def wanted(self, node: str, key: ResourceKey) -> Packed | None:
        if node not in self.edge_nodes:
            return None
        if key.kind == self.primary:
            return self.pods.get(key) if self.pod_node.get(key) == node else None
        return self.configs.get(key) if self.uses(node, key) else None

    def changes(self, node: str, only: ResourceKey | None = None) -> list[Change]:
        """What to send ``node`` so that it holds ``desired(node)``, given what was sent before
        (for one object only, with ``only``: a ConfigMap event need not look at the rest; a claim's event looks at
        everything, since the volume it names, or named before, comes or goes with it)."""
        sent = self.sent.setdefault(node, {})
        removed = self.removed.setdefault(node, {})
        if only is not None and only.kind in REFERRING_KINDS:
            only = None
        if only is not None:
            obj = self.wanted(node, only)
            want = {only: obj} if obj is not None else {}
            stale = [only] if only in sent and obj is None else []
        else:
            want = self.desired(node)
            stale = [k for k in sent if k not in want]
        out: list[Change] = []
        for key, obj in want.items():
            if sent.get(key) != (obj.rv, obj.uid):
                out.append(Change(node, Op.UPDATE if key in sent else Op.INSERT, key, obj.rv, obj.obj()))
                sent[key] = (obj.rv, obj.uid)
            removed.pop(key, None)
        for key in stale:
            rv, uid = sent.pop(key)
            version = self._delete_version(key, rv)
            out.append(Change(node, Op.DELETE, key, version, deletion_body(key, uid)))
            self._note_removed(removed, key, (rv, uid) if version == rv else None)
        gone = self._deleted[0] if self._deleted is not None else None
        if gone is not None and gone in removed and gone not in want and gone not in stale:
            rv, uid = removed[gone]
            version = self._delete_version(gone, rv)
            if version != rv:  # deleted in the API since it left the node: again, at the deletion's version
                out.append(Change(node, Op.DELETE, gone, version, deletion_body(gone, uid)))
                del removed[gone]
        return out

    @staticmethod
    def _note_removed(removed: dict[ResourceKey, tuple[str, str | None]], key: ResourceKey,
                      version: tuple[str, str | None] | None) -> None:
        """Remember ``key`` as deleted at its last version sent (``version``), or forget it (None: the delete went
        out at the deletion's own version, which no redelivery gets past)."""
        removed.pop(key, None)
        if version is None:
            return
        removed[key] = version
        while len(removed) > REMOVED_KEPT:
            del removed[next(iter(removed))]

    def forget(self, node: str) -> None:
        """``node`` is no longer this controller's to send to (another EdgeController replica took it,
        cloud/edgecontroller/shard.py): what was sent it and removed from it is forgotten, so that a replica does
        not keep the per-node state of every node it ever held, nor act later on a ``removed`` entry another
        replica's sends have made wrong. Should the node come back, its resync starts from what it then holds.
        The node's objects stay indexed (every replica places every pod)."""
        self.sent.pop(node, None)
        self.removed.pop(node, None)

    def resync(self, node: str, held: dict[ResourceKey, tuple[str, str | None]]) -> list[Change]:
        """The node reports what it holds (key -> (rv, uid)): send what is newer, delete what is not wanted."""
        sent = dict(held)  # changes() deletes what is not wanted and updates what differs
        want = self.desired(node)
        for key, (rv, uid) in held.items():
            obj = want.get(key)
            if obj is not None and obj.uid == uid and not newer_version(obj.rv, rv):
                sent[key] = (obj.rv, uid)  # up to date
        self.sent[node] = sent
        return self.changes(node)
