"""Pod spec translation: env, envFrom, volumes, quantities, pull policies, errors a user would see."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from edge.edged.podfields import FieldRefused
from edge.edged.podspec import ConfigError, PodSpecError, parse_quantity, plan_pod
from edge.edged.podworker import restart_delay
from edge.edged.status import ContainerView, phase, pod_status
from schemas.podrefs import config_refs
from schemas.resource import ResourceKey

CONFIG = {
    ResourceKey("ns", "configmap", "cfg"): {"data": {"a": "1", "b": "2"}},
    ResourceKey("ns", "secret", "sec"): {"data": {"pw": base64.b64encode(b"hunter2").decode()}},
}


def lookup(key: ResourceKey) -> dict[str, Any] | None:
    return CONFIG.get(key)


def pod(**container: Any) -> dict[str, Any]:
    spec = container.pop("spec", {})
    c = {"name": "main", "image": "localhost/busybox:1", **container}
    return {"metadata": {"name": "p", "namespace": "ns", "uid": "u-1"}, "spec": {"containers": [c], **spec}}


def test_env_sources() -> None:
    plan = plan_pod(pod(env=[
        {"name": "PLAIN", "value": "x"},
        {"name": "FROM_CM", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "a"}}},
        {"name": "FROM_SECRET", "valueFrom": {"secretKeyRef": {"name": "sec", "key": "pw"}}},
        {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "OPT", "valueFrom": {"configMapKeyRef": {"name": "nope", "key": "k", "optional": True}}},
    ], envFrom=[{"configMapRef": {"name": "cfg"}, "prefix": "CFG_"}]), "edge-1", lookup)
    env = plan.containers[0].env
    assert env == {"CFG_a": "1", "CFG_b": "2", "PLAIN": "x", "FROM_CM": "1", "FROM_SECRET": "hunter2", "POD": "p",
                   "OPT": ""}
    assert plan.config_refs == {ResourceKey("ns", "configmap", "cfg"), ResourceKey("ns", "secret", "sec"),
                                ResourceKey("ns", "configmap", "nope")}


def test_missing_config_waits_like_kubelet() -> None:
    with pytest.raises(ConfigError, match='configmap "gone" not found') as caught:
        plan_pod(pod(env=[{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "gone", "key": "k"}}}]), "n", lookup)
    assert caught.value.reason == "CreateContainerConfigError"
    with pytest.raises(ConfigError, match="couldn't find key zz"):
        plan_pod(pod(env=[{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "zz"}}}]), "n", lookup)


def test_volumes_and_mounts() -> None:
    plan = plan_pod(pod(volumeMounts=[{"name": "c", "mountPath": "/etc/c"}, {"name": "s", "mountPath": "/s"},
                                      {"name": "e", "mountPath": "/tmp/e"}],
                        spec={"volumes": [{"name": "c", "configMap": {"name": "cfg", "items": [{"key": "a",
                                                                                                "path": "x/a.txt"}]}},
                                          {"name": "s", "secret": {"secretName": "sec", "defaultMode": 0o400}},
                                          {"name": "e", "emptyDir": {}}]}), "n", lookup)
    assert plan.volumes["c"].files is not None
    assert plan.volumes["c"].files.files == {"x/a.txt": (b"1", 0o644)}
    assert plan.volumes["s"].files is not None
    assert plan.volumes["s"].files.files == {"pw": (b"hunter2", 0o400)}
    assert [m.target for m in plan.containers[0].mounts] == ["/etc/c", "/s", "/tmp/e"]


@pytest.mark.parametrize(("change", "message"), [
    ({"volumeMounts": [{"name": "ghost", "mountPath": "/x"}]}, "unknown volume 'ghost'"),
    ({"image": ""}, "has no image"),
    ({"imagePullPolicy": "Sometimes"}, "is not Always, IfNotPresent or Never"),
    ({"resources": {"limits": {"memory": "lots"}}}, "is not a Kubernetes quantity"),
    ({"spec": {"restartPolicy": "Maybe"}}, "restartPolicy 'Maybe'"),
    ({"spec": {"volumes": [{"name": "v", "configMap": {"name": "cfg", "items": [{"key": "a", "path": "../x"}]}}]}},
     "must be relative"),
])
def test_invalid_specs_name_the_problem(change: dict[str, Any], message: str) -> None:
    with pytest.raises(PodSpecError, match=message):
        plan_pod(pod(**change), "n", lookup)


def test_quantities_and_pull_policy_defaults() -> None:
    assert parse_quantity("128Mi", "m") == 128 * 2**20
    assert parse_quantity("500m", "c") == 0.5
    assert parse_quantity("2", "c") == 2
    assert parse_quantity("1G", "m") == 10**9
    plan = plan_pod(pod(image="repo/app:latest", resources={"limits": {"memory": "64Mi", "cpu": "250m"}}), "n", lookup)
    assert plan.containers[0].pull_policy == "Always"
    assert plan.containers[0].mem_limit == 64 * 2**20
    assert plan.containers[0].nano_cpus == 250_000_000
    assert plan_pod(pod(image="repo/app:1.2"), "n", lookup).containers[0].pull_policy == "IfNotPresent"


def test_config_refs_without_resolving() -> None:
    refs = config_refs(pod(envFrom=[{"secretRef": {"name": "sec"}}], spec={
        "volumes": [{"name": "v", "configMap": {"name": "cfg"}},
                    {"name": "p", "projected": {"sources": [{"configMap": {"name": "proj"}}]}}],
        "imagePullSecrets": [{"name": "pull"}]}))
    assert refs == {ResourceKey("ns", "secret", "sec"), ResourceKey("ns", "configmap", "cfg"),
                    ResourceKey("ns", "configmap", "proj"), ResourceKey("ns", "secret", "pull")}


def test_crash_loop_backoff_delays() -> None:
    assert [restart_delay(n) for n in (1, 2, 3, 4, 7, 20)] == [0, 10, 20, 40, 300, 300]


def test_phase_rules() -> None:
    running = {"state": {"running": {}}, "restartCount": 0, "lastState": {}}
    done_ok = {"state": {"terminated": {"exitCode": 0}}, "restartCount": 0, "lastState": {}}
    done_bad = {"state": {"terminated": {"exitCode": 1}}, "restartCount": 0, "lastState": {}}
    waiting = {"state": {"waiting": {"reason": "ContainerCreating"}}, "restartCount": 0, "lastState": {}}
    assert phase("Always", [running, waiting]) == "Running"
    assert phase("Never", [done_ok, done_ok]) == "Succeeded"
    assert phase("Never", [done_ok, done_bad]) == "Failed"
    assert phase("Always", [waiting]) == "Pending"
    backoff = {"state": {"waiting": {"reason": "CrashLoopBackOff"}}, "restartCount": 3, "lastState": {}}
    assert phase("Always", [backoff]) == "Running"
    status = pod_status("Always", [ContainerView("main", "img", None, "ContainerCreating", "", False, None)],
                        pod_ip="", host_ip="10.0.0.1", start_time="t", since="t")
    assert status["phase"] == "Pending"
    assert {c["type"]: c["status"] for c in status["conditions"]}["Ready"] == "False"


def test_projected_volume_merges_sources() -> None:
    plan = plan_pod(pod(volumeMounts=[{"name": "p", "mountPath": "/p"}], spec={"volumes": [{"name": "p", "projected": {
        "sources": [{"configMap": {"name": "cfg", "items": [{"key": "a", "path": "a"}]}},
                    {"secret": {"name": "sec"}}, {"configMap": {"name": "absent", "optional": True}}]}}]}),
        "n", lookup)
    files = plan.volumes["p"].files
    assert files is not None
    assert files.files == {"a": (b"1", 0o644), "pw": (b"hunter2", 0o644)}
    with pytest.raises(FieldRefused, match=r"spec\.volumes\[0\]\.projected\.sources\[0\]\.clusterTrustBundle is not "
                                           "supported on this node") as caught:
        plan_pod(pod(spec={"volumes": [{"name": "p", "projected": {"sources": [{"clusterTrustBundle": {}}]}}]}), "n",
                 lookup)
    assert caught.value.field == "spec.volumes[].projected.sources[].clusterTrustBundle"


def test_a_volume_type_this_node_cannot_mount_is_a_refused_field() -> None:
    """Refused as a field (reason FieldNotSupported, counted in the metric by field), not as an invalid spec."""
    with pytest.raises(FieldRefused, match=r"spec\.volumes\[1\]\.nfs is not supported on this node") as caught:
        plan_pod(pod(spec={"volumes": [{"name": "e", "emptyDir": {}}, {"name": "v", "nfs": {"server": "x"}}]}),
                 "n", lookup)
    assert (caught.value.field, caught.value.reason) == ("spec.volumes[].nfs", "FieldNotSupported")
    with pytest.raises(PodSpecError, match="volume v: no volume type is set"):
        plan_pod(pod(spec={"volumes": [{"name": "v"}]}), "n", lookup)
