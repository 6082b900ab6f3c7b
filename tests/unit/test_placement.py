"""Which objects each edge node holds, and what travels when that changes."""

from typing import Any

from cloud.placement import REMOVED_KEPT, Placement
from schemas.envelope import Op
from schemas.kubeobj import EDGE_ROLE_LABEL
from schemas.resource import ResourceKey


def node(name: str, edge: bool = True) -> dict[str, Any]:
    return {"metadata": {"name": name, "labels": {EDGE_ROLE_LABEL: ""} if edge else {}}}


def pod(name: str, on: str, rv: str, cm: str | None = None, uid: str = "") -> dict[str, Any]:
    spec: dict[str, Any] = {"nodeName": on, "containers": [{"name": "c", "image": "i"}]}
    if cm:
        spec["volumes"] = [{"name": "v", "configMap": {"name": cm}}]
    return {"metadata": {"name": name, "namespace": "ns", "resourceVersion": rv, "uid": uid or f"u-{name}"},
            "spec": spec}


def cm(name: str, rv: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "ns", "resourceVersion": rv, "uid": f"c-{name}"}, "data": {}}


def summary(changes: list[Any]) -> list[tuple[str, str, str]]:
    return sorted((c.node, c.op.value, str(c.key)) for c in changes)


def test_configs_follow_the_pods_that_use_them() -> None:
    p = Placement()
    assert p.on_node("ADDED", node("e1")) == {"e1"}
    assert p.on_node("ADDED", node("cloud-worker", edge=False)) == set()
    assert p.on_secondary("configmap", "ADDED", cm("shared", "1")) == set()  # nobody uses it yet
    assert p.on_primary("ADDED", pod("web", "e1", "2", cm="shared")) == {"e1"}
    assert summary(p.changes("e1")) == [("e1", "insert", "ns/configmap/shared"), ("e1", "insert", "ns/pod/web")]
    assert p.changes("e1") == []  # nothing new
    assert p.on_secondary("configmap", "MODIFIED", cm("shared", "3")) == {"e1"}
    assert summary(p.changes("e1", ResourceKey("ns", "configmap", "shared"))) == [
        ("e1", "update", "ns/configmap/shared")]
    assert p.on_primary("ADDED", pod("batch", "cloud-worker", "4", cm="shared")) == set()  # not an edge node
    assert p.on_primary("DELETED", pod("web", "e1", "5", cm="shared")) == {"e1"}
    deleted = p.changes("e1")
    assert summary(deleted) == [("e1", "delete", "ns/configmap/shared"), ("e1", "delete", "ns/pod/web")]
    assert {c.body["metadata"]["uid"] for c in deleted} == {"c-shared", "u-web"}
    # The pod was deleted in the API: its delete goes at the deletion's version, above every update the node
    # may still be handed late; the ConfigMap lives on, unused here: its delete keeps the version last sent.
    assert {str(c.key): c.rv for c in deleted} == {"ns/pod/web": "5", "ns/configmap/shared": "3"}


def test_a_delete_goes_at_the_deletion_version_only_for_what_was_deleted() -> None:
    p = Placement()
    p.on_node("ADDED", node("e1"))
    p.on_secondary("configmap", "ADDED", cm("conf", "1"))
    p.on_primary("ADDED", pod("web", "e1", "2", cm="conf"))
    p.changes("e1")
    p.on_secondary("configmap", "DELETED", cm("conf", "9"))
    (gone,) = p.changes("e1", ResourceKey("ns", "configmap", "conf"))
    assert (gone.op, gone.rv) == (Op.DELETE, "9")
    p.on_primary("MODIFIED", pod("web", "e2", "10"))  # moved off the node: not a deletion
    (moved,) = p.changes("e1")
    assert (moved.op, str(moved.key), moved.rv) == (Op.DELETE, "ns/pod/web", "2")


def _pod_and_its_configmap_sent_then_pod_deleted() -> Placement:
    """Node e1 was sent pod web and the ConfigMap conf it uses; then web was deleted (its changes not yet taken)."""
    p = Placement()
    p.on_node("ADDED", node("e1"))
    p.on_secondary("configmap", "ADDED", cm("conf", "1"))
    p.on_primary("ADDED", pod("web", "e1", "2", cm="conf"))
    p.changes("e1")
    p.on_primary("DELETED", pod("web", "e1", "3", cm="conf"))
    return p


def test_an_object_that_left_a_node_and_is_then_deleted_is_deleted_there_again_at_the_deletion_version() -> None:
    """The HA fleet test's stale ConfigMap: a pod and then its ConfigMap deleted back to back. The pod's delete
    takes the ConfigMap off the node at the version last sent (it still lives in the API then), which lets that
    version back in; a broker redelivering its insert late brought it back for good. Its deletion in the API
    must reach the node too, at the deletion's version, so that the tombstone refuses the redelivery."""
    p = _pod_and_its_configmap_sent_then_pod_deleted()
    assert {str(c.key): c.rv for c in p.changes("e1")} == {"ns/pod/web": "3", "ns/configmap/conf": "1"}
    key = ResourceKey("ns", "configmap", "conf")
    assert key in p.removed["e1"]  # how nodesync knows to ask for the node's changes on the deletion
    p.on_secondary("configmap", "DELETED", cm("conf", "4"))
    (again,) = p.changes("e1", key)
    assert (again.op, again.key, again.rv, again.body["metadata"]["uid"]) == (Op.DELETE, key, "4", "c-conf")
    assert p.changes("e1", key) == []  # once
    assert key not in p.removed["e1"]


def test_an_object_back_on_its_node_is_no_longer_remembered_as_removed() -> None:
    p = _pod_and_its_configmap_sent_then_pod_deleted()
    p.changes("e1")
    p.on_primary("ADDED", pod("api", "e1", "5", cm="conf"))  # the ConfigMap comes back, unchanged
    assert summary(p.changes("e1")) == [("e1", "insert", "ns/configmap/conf"), ("e1", "insert", "ns/pod/api")]
    assert p.removed["e1"] == {}
    p.on_secondary("configmap", "MODIFIED", cm("conf", "6"))  # and a change to it travels as usual
    assert [(c.op, c.rv) for c in p.changes("e1", ResourceKey("ns", "configmap", "conf"))] == [(Op.UPDATE, "6")]


def test_removed_objects_are_remembered_up_to_a_bound_per_node() -> None:
    p = Placement()
    p.on_node("ADDED", node("e1"))
    total = REMOVED_KEPT + 5
    for i in range(total):
        p.on_secondary("configmap", "ADDED", cm(f"c{i}", str(10 + i)))
        p.on_primary("ADDED", pod(f"p{i}", "e1", str(10_000 + i), cm=f"c{i}"))
    p.changes("e1")
    for i in range(total):
        p.on_primary("DELETED", pod(f"p{i}", "e1", str(20_000 + i), cm=f"c{i}"))
        p.changes("e1")
    assert len(p.removed["e1"]) == REMOVED_KEPT
    assert ResourceKey("ns", "configmap", "c0") not in p.removed["e1"]  # the oldest went first


def test_a_node_never_gets_another_nodes_config() -> None:
    p = Placement()
    p.on_node("ADDED", node("e1"))
    p.on_node("ADDED", node("e2"))
    p.on_secondary("secret", "ADDED", {"metadata": {"name": "only2", "namespace": "ns", "resourceVersion": "1"}})
    spec = pod("p2", "e2", "2")
    spec["spec"]["containers"][0]["env"] = [{"name": "X", "valueFrom": {"secretKeyRef": {"name": "only2",
                                                                                         "key": "k"}}}]
    p.on_primary("ADDED", spec)
    assert p.changes("e1") == []
    assert summary(p.changes("e2")) == [("e2", "insert", "ns/pod/p2"), ("e2", "insert", "ns/secret/only2")]
    assert not p.uses("e1", ResourceKey("ns", "secret", "only2"))
    assert p.uses("e2", ResourceKey("ns", "secret", "only2"))


def test_resync_sends_only_the_difference() -> None:
    p = Placement()
    p.on_node("ADDED", node("e1"))
    p.on_secondary("configmap", "ADDED", cm("a", "10"))
    p.on_primary("ADDED", pod("web", "e1", "11", cm="a"))
    held: dict[ResourceKey, tuple[str, str | None]] = {
        ResourceKey("ns", "configmap", "a"): ("9", "c-a"),  # older: resend
        ResourceKey("ns", "pod", "web"): ("11", "u-web"),  # current: leave
        ResourceKey("ns", "pod", "gone"): ("3", "u-gone"),  # deleted while away: delete
    }
    assert summary(p.resync("e1", held)) == [("e1", "delete", "ns/pod/gone"), ("e1", "update", "ns/configmap/a")]
    assert p.changes("e1") == []
    # A pod recreated under the same name is sent again even with an older-looking version.
    p.on_primary("MODIFIED", pod("web", "e1", "12", cm="a", uid="u-new"))
    (change,) = p.changes("e1")
    assert change.op == Op.UPDATE
    assert change.body["metadata"]["uid"] == "u-new"


def test_resync_takes_any_version_a_node_reports() -> None:
    # The node's listing is its word: '²' passes str.isdigit() and int() refuses it; a ValueError here would
    # lose the node's resync.
    p = Placement()
    p.on_node("ADDED", node("e1"))
    p.on_primary("ADDED", pod("web", "e1", "11"))
    held: dict[ResourceKey, tuple[str, str | None]] = {ResourceKey("ns", "pod", "web"): ("²", "u-web")}
    assert summary(p.resync("e1", held)) == [("e1", "update", "ns/pod/web")]


def claim(name: str, rv: str, volume: str | None = None) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "ns", "resourceVersion": rv, "uid": f"c-{name}"},
            "spec": {"volumeName": volume} if volume else {}, "status": {"phase": "Bound" if volume else "Pending"}}


def volume(name: str, rv: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "resourceVersion": rv, "uid": f"v-{name}"},
            "spec": {"hostPath": {"path": f"/srv/{name}"}}}


def claiming(name: str, on: str, rv: str, claim_name: str) -> dict[str, Any]:
    found = pod(name, on, rv)
    found["spec"]["volumes"] = [{"name": "data", "persistentVolumeClaim": {"claimName": claim_name}}]
    return found


def test_a_claims_volume_follows_the_claim_to_the_nodes_whose_pods_use_it() -> None:
    p = Placement()
    p.on_node("ADDED", node("e1"))
    p.on_node("ADDED", node("e2"))
    assert p.on_secondary("persistentvolume", "ADDED", volume("pv1", "1")) == set()
    assert p.on_secondary("persistentvolumeclaim", "ADDED", claim("data", "2")) == set()
    assert p.on_primary("ADDED", claiming("db", "e1", "3", "data")) == {"e1"}
    # Not bound yet: the claim travels, no volume does.
    assert summary(p.changes("e1")) == [("e1", "insert", "ns/persistentvolumeclaim/data"),
                                        ("e1", "insert", "ns/pod/db")]
    # Bound: the claim's event brings the volume it names, which is cluster-scoped.
    assert p.on_secondary("persistentvolumeclaim", "MODIFIED", claim("data", "4", "pv1")) == {"e1"}
    assert summary(p.changes("e1", ResourceKey("ns", "persistentvolumeclaim", "data"))) == [
        ("e1", "insert", "-/persistentvolume/pv1"), ("e1", "update", "ns/persistentvolumeclaim/data")]
    pv_key = ResourceKey(None, "persistentvolume", "pv1")
    assert p.uses("e1", pv_key)
    assert not p.uses("e2", pv_key)
    assert p.changes("e2") == []
    # The volume changes: only the node that holds it hears of it.
    assert p.on_secondary("persistentvolume", "MODIFIED", volume("pv1", "5")) == {"e1"}
    assert summary(p.changes("e1", pv_key)) == [("e1", "update", "-/persistentvolume/pv1")]
    # The pod goes: claim and volume go with it.
    p.on_primary("DELETED", claiming("db", "e1", "6", "data"))
    assert summary(p.changes("e1")) == [("e1", "delete", "-/persistentvolume/pv1"),
                                        ("e1", "delete", "ns/persistentvolumeclaim/data"),
                                        ("e1", "delete", "ns/pod/db")]
    assert not p.uses("e1", pv_key)


def test_a_deleted_claim_takes_its_volume_off_the_node() -> None:
    p = Placement()
    p.on_node("ADDED", node("e1"))
    p.on_secondary("persistentvolumeclaim", "ADDED", claim("data", "1", "pv1"))
    p.on_secondary("persistentvolume", "ADDED", volume("pv1", "2"))
    p.on_primary("ADDED", claiming("db", "e1", "3", "data"))
    assert len(p.changes("e1")) == 3
    assert p.on_secondary("persistentvolumeclaim", "DELETED", claim("data", "4", "pv1")) == {"e1"}
    assert summary(p.changes("e1", ResourceKey("ns", "persistentvolumeclaim", "data"))) == [
        ("e1", "delete", "-/persistentvolume/pv1"), ("e1", "delete", "ns/persistentvolumeclaim/data")]
    assert p.referrers == {}


def test_a_node_handed_to_another_replica_is_forgotten_and_resynced_from_what_it_holds_if_it_comes_back() -> None:
    """EdgeController replicas (cloud/edgecontroller/shard.py): every one indexes every pod, only the owner computes a
    node's changes; a lost node's per-node state goes, a regained one starts from its store's listing."""
    p = _pod_and_its_configmap_sent_then_pod_deleted()
    p.forget("e1")
    assert "e1" not in p.sent
    assert "e1" not in p.removed
    assert p.desired("e1") == {}, "the objects stay indexed: e1 simply has none now"
    p.on_primary("ADDED", pod("api", "e1", "4", cm="conf"))
    assert set(p.desired("e1")) == {ResourceKey("ns", "pod", "api"), ResourceKey("ns", "configmap", "conf")}
    held: dict[ResourceKey, tuple[str, str | None]] = {  # what the other replica left on the node
        ResourceKey("ns", "pod", "api"): ("4", "u-api"),
        ResourceKey("ns", "configmap", "conf"): ("1", "c-conf"),
        ResourceKey("ns", "pod", "web"): ("2", "u-web"),
    }
    assert summary(p.resync("e1", held)) == [("e1", "delete", "ns/pod/web")]
    p.forget("never-held")  # forgetting a node never held changes nothing
    assert p.changes("e1") == []
