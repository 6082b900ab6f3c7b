"""persistentVolumeClaim volumes: bound claims to hostPath or local volumes mount; the rest waits or is refused."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from edge.edged.claims import node_matches
from edge.edged.hostpaths import MountFailed
from edge.edged.podspec import ConfigError, PodSpecError, plan_pod
from edge.edged.volumes import Volumes
from schemas.fields import BodyError
from schemas.resource import ResourceKey
from schemas.volumeclaims import Claim, Volume

NODE = "edge-1"


def claim(name: str, volume: str | None, phase: str = "Bound") -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "ns"}, "spec": {"volumeName": volume} if volume else {},
            "status": {"phase": phase}}


def pv(name: str, claim_name: str = "data", **source: Any) -> dict[str, Any]:
    return {"metadata": {"name": name},
            "spec": {**source, "claimRef": {"namespace": "ns", "name": claim_name}, "capacity": {"storage": "1Gi"},
                     "accessModes": ["ReadWriteOnce"], "persistentVolumeReclaimPolicy": "Retain"}}


def on_node(node: str) -> dict[str, Any]:
    return {"required": {"nodeSelectorTerms": [{"matchExpressions": [
        {"key": "kubernetes.io/hostname", "operator": "In", "values": [node]}]}]}}


def pod(read_only: bool = False, mount_read_only: bool = False) -> dict[str, Any]:
    return {"metadata": {"name": "p", "namespace": "ns", "uid": "u-1"}, "spec": {
        "containers": [{"name": "main", "image": "localhost/busybox:1",
                        "volumeMounts": [{"name": "data", "mountPath": "/data", "readOnly": mount_read_only}]}],
        "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "data", "readOnly": read_only}}]}}


def plan(store: dict[ResourceKey, dict[str, Any]], spec: dict[str, Any] | None = None) -> Any:
    return plan_pod(spec or pod(), NODE, store.get)


CLAIM = ResourceKey("ns", "persistentvolumeclaim", "data")


def volume_key(name: str) -> ResourceKey:
    return ResourceKey(None, "persistentvolume", name)


def test_a_bound_hostpath_claim_mounts_the_volumes_directory(tmp_path: Path) -> None:
    store = {CLAIM: claim("data", "pv1"), volume_key("pv1"): pv("pv1", hostPath={"path": str(tmp_path / "pv1")})}
    planned = plan(store)
    volume = planned.volumes["data"]
    assert (volume.kind, volume.host_path, volume.read_only) == ("hostPath", str(tmp_path / "pv1"), False)
    assert {CLAIM, volume_key("pv1")} <= planned.config_refs
    volumes = Volumes(tmp_path / "edged")
    volumes.prepare(planned)
    assert (tmp_path / "pv1").is_dir()  # a hostPath volume's directory is made, as for a hostPath volume
    (mount,) = volumes.mounts(planned, planned.containers[0])
    assert (mount.source, mount.target, mount.read_only) == (str(tmp_path / "pv1"), "/data", False)


def test_read_only_claims_mount_read_only_everywhere(tmp_path: Path) -> None:
    store = {CLAIM: claim("data", "pv1"), volume_key("pv1"): pv("pv1", hostPath={"path": "/srv/pv1"})}
    planned = plan(store, pod(read_only=True))
    (mount,) = Volumes(tmp_path).mounts(planned, planned.containers[0])
    assert mount.read_only
    planned = plan(store, pod(mount_read_only=True))
    assert Volumes(tmp_path).mounts(planned, planned.containers[0])[0].read_only


def test_a_local_volume_mounts_on_the_node_its_affinity_names(tmp_path: Path) -> None:
    disk = tmp_path / "disk"
    store = {CLAIM: claim("data", "local1"),
             volume_key("local1"): pv("local1", local={"path": str(disk)}, nodeAffinity=on_node(NODE))}
    planned = plan(store)
    assert (planned.volumes["data"].kind, planned.volumes["data"].host_path) == ("local", str(disk))
    with pytest.raises(MountFailed, match=f'volume "data" : hostPath type check failed: {disk} is not a directory'):
        Volumes(tmp_path / "edged").prepare(planned)
    assert not disk.exists()  # a local volume is the administrator's disk: never made here, the pod waits for it
    store[volume_key("local1")] = pv("local1", local={"path": str(disk)}, nodeAffinity=on_node("edge-2"))
    with pytest.raises(PodSpecError, match='local persistentvolume "local1" has a nodeAffinity that does not include '
                                           "node edge-1"):
        plan(store)
    store[volume_key("local1")] = pv("local1", local={"path": str(disk)})
    with pytest.raises(PodSpecError, match="has no nodeAffinity"):
        plan(store)


@pytest.mark.parametrize(("store", "message"), [
    ({}, 'volume data: persistentvolumeclaim "data" not found'),
    ({CLAIM: claim("data", None, "Pending")}, 'persistentvolumeclaim "data" is not bound \\(phase Pending\\)'),
    ({CLAIM: claim("data", "pv1")}, 'persistentvolume "pv1" of claim "data" not found'),
    ({CLAIM: claim("data", "pv1"), volume_key("pv1"): pv("pv1", claim_name="other", hostPath={"path": "/x"})},
     'persistentvolume "pv1" is bound to claim ns/other, not "data"'),
])
def test_a_claim_not_ready_keeps_the_pod_waiting_with_the_claim_named(store: dict[ResourceKey, Any],
                                                                      message: str) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        plan(store)
    assert caught.value.reason == "ContainerCreating"


def test_other_volume_types_are_refused_with_the_type_named() -> None:
    store = {CLAIM: claim("data", "pv1"), volume_key("pv1"): pv("pv1", nfs={"server": "nas", "path": "/export"})}
    with pytest.raises(PodSpecError, match='persistentvolume "pv1" is of type nfs, which this node cannot mount') as \
            caught:
        plan(store)
    assert not isinstance(caught.value, ConfigError)
    assert caught.value.reason == "InvalidSpec"


@pytest.mark.parametrize(("terms", "expected"), [
    ([{"matchExpressions": [{"key": "kubernetes.io/hostname", "operator": "NotIn", "values": ["x"]}]}], True),
    ([{"matchExpressions": [{"key": "zone", "operator": "Exists"}]}], False),
    ([{"matchExpressions": [{"key": "zone", "operator": "DoesNotExist"}]}], True),
    ([{"matchFields": [{"key": "metadata.name", "operator": "In", "values": [NODE]}]}], True),
    ([{}, {"matchExpressions": [{"key": "kubernetes.io/hostname", "operator": "In", "values": [NODE]}]}], True),
    ([{}], False),  # an empty term selects nothing
    ([{"matchExpressions": [{"key": "kubernetes.io/hostname", "operator": "In", "values": [NODE]},
                            {"key": "zone", "operator": "In", "values": ["a"]}]}], False),  # ANDed
])
def test_node_selector_terms(terms: list[dict[str, Any]], expected: bool) -> None:
    assert node_matches(terms, NODE, {"kubernetes.io/hostname": NODE}) is expected


def test_claims_and_volumes_entering_edged_are_checked_with_the_field_named() -> None:
    key = ResourceKey("ns", "persistentvolumeclaim", "data")
    with pytest.raises(BodyError, match=r"body.spec.volumeName: must be a string, not an integer"):
        Claim.parse({"metadata": {"name": "data", "namespace": "ns"}, "spec": {"volumeName": 7}}, key)
    parsed = Claim.parse(claim("data", "pv1"), key)
    assert (parsed.volume_name, parsed.bound, parsed.volume_key()) == ("pv1", True, volume_key("pv1"))
    assert not Claim.view(claim("data", "pv1", phase="Pending")).bound
    with pytest.raises(BodyError, match=r"body.spec.hostPath.path: is missing"):
        Volume.parse({"metadata": {"name": "pv1"}, "spec": {"hostPath": {}}}, volume_key("pv1"))
    with pytest.raises(BodyError, match=r"body.metadata.name: is 'pv2', not 'pv1'"):
        Volume.parse(pv("pv2", hostPath={"path": "/x"}), volume_key("pv1"))
    found = Volume.parse(pv("pv1", local={"path": "/mnt/disk"}, nodeAffinity=on_node(NODE)), volume_key("pv1"))
    assert (found.source_type, found.path, found.claim and found.claim.name) == ("local", "/mnt/disk", "data")
    assert Volume.view(pv("pv1", csi={"driver": "d", "volumeHandle": "h"})).source_type == "csi"


def test_hostpath_volume_types_and_block_mode() -> None:
    def planned(**spec: Any) -> Any:
        return plan({CLAIM: claim("data", "pv1"), volume_key("pv1"): pv("pv1", **spec)}).volumes["data"]

    # The type goes with the volume, checked on the host when it is set up, as a plain hostPath's (hostpaths.py).
    for kind in ("DirectoryOrCreate", "Directory", "Socket", "FileOrCreate"):
        found = planned(hostPath={"path": "/srv/a", "type": kind})
        assert (found.kind, found.host_path_type) == ("hostPath", kind)
    with pytest.raises(PodSpecError, match="is a hostPath of type Pipe, which is not a hostPath type"):
        planned(hostPath={"path": "/run/x", "type": "Pipe"})
    with pytest.raises(PodSpecError, match="has volumeMode Block; this node mounts Filesystem volumes only"):
        planned(hostPath={"path": "/dev/sdb"}, volumeMode="Block")
