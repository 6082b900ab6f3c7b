"""The PodSpec field audit: every field of the API has a state, and a refused field fails the pod by name."""

from __future__ import annotations

import re
from typing import Any

import pytest
from kubernetes.client import (
    V1Container,
    V1EphemeralContainer,
    V1PodSecurityContext,
    V1PodSpec,
    V1ResourceRequirements,
    V1SecurityContext,
    V1VolumeMount,
)

from edge.edged import podfields
from edge.edged.podfields import FieldRefused, State
from edge.edged.podspec import plan_pod


def fields(model: Any) -> set[str]:
    return set(model.attribute_map.values())


@pytest.mark.parametrize(("model", "table"), [
    (V1PodSpec, podfields.POD_SPEC), (V1Container, podfields.CONTAINER),
    (V1SecurityContext, podfields.SECURITY_CONTEXT), (V1PodSecurityContext, podfields.POD_SECURITY_CONTEXT),
    (V1VolumeMount, podfields.VOLUME_MOUNT), (V1ResourceRequirements, podfields.RESOURCES),
    (V1EphemeralContainer, podfields.EPHEMERAL_CONTAINER),
])
def test_every_field_of_the_api_has_a_state(model: Any, table: Any) -> None:
    assert fields(model) == set(table), "fields missing from (or unknown to) the kubernetes client's model"


def test_the_fields_real_clusters_give_every_pod_are_honoured() -> None:
    rows = {row[0]: row[1] for row in podfields.table_rows()}
    for name in ("spec.initContainers", "spec.containers[].startupProbe", "spec.containers[].lifecycle",
                 "spec.automountServiceAccountToken", "spec.imagePullSecrets", "spec.volumes",
                 "spec.containers[].terminationMessagePolicy", "spec.securityContext.fsGroup"):
        assert rows[name] is State.HONOURED, name
    assert rows["spec.containers[].restartPolicy"] is State.REFUSED  # sidecars: the pod's policy governs all
    assert rows["spec.ephemeralContainers[].targetContainerName"] is State.REFUSED


def pod(spec: dict[str, Any] | None = None, **container: Any) -> dict[str, Any]:
    c = {"name": "main", "image": "localhost/busybox:1", **container}
    return {"metadata": {"name": "p", "namespace": "ns", "uid": "u-1"}, "spec": {"containers": [c], **(spec or {})}}


def refusal(p: dict[str, Any]) -> FieldRefused:
    with pytest.raises(FieldRefused) as caught:
        plan_pod(p, "edge-1", lambda key: None)
    return caught.value


@pytest.mark.parametrize(("p", "path"), [
    (pod(securityContext={"seLinuxOptions": {"level": "s0:c1"}}), "spec.containers[0].securityContext.seLinuxOptions"),
    (pod(securityContext={"procMount": "Unmasked"}), "spec.containers[0].securityContext.procMount"),
    (pod(securityContext={"windowsOptions": {"runAsUserName": "x"}}),
     "spec.containers[0].securityContext.windowsOptions"),
    (pod({"hostUsers": False}), "spec.hostUsers"),
    (pod({"os": {"name": "windows"}}), "spec.os"),
    (pod({"runtimeClassName": "kata"}), "spec.runtimeClassName"),
    (pod({"activeDeadlineSeconds": 30}), "spec.activeDeadlineSeconds"),
    (pod({"readinessGates": [{"conditionType": "x"}]}), "spec.readinessGates"),
    (pod({"ephemeralContainers": [{"name": "dbg", "image": "x"}]}), "spec.ephemeralContainers"),
    (pod(volumeDevices=[{"name": "b", "devicePath": "/dev/x"}]), "spec.containers[0].volumeDevices"),
    (pod(volumeMounts=[{"name": "v", "mountPath": "/v", "mountPropagation": "Bidirectional"}],
         spec={"volumes": [{"name": "v", "emptyDir": {}}]}), "spec.containers[0].volumeMounts[0].mountPropagation"),
    (pod({"securityContext": {"supplementalGroupsPolicy": "Strict"}}),
     "spec.securityContext.supplementalGroupsPolicy"),
    (pod({"futureField": {"a": 1}}), "spec.futureField"),
    (pod({"volumes": [{"name": "m", "emptyDir": {"medium": "Memory"}},
                      {"name": "d", "emptyDir": {"sizeLimit": "1Gi"}}]}), "spec.volumes[1].emptyDir.sizeLimit"),
])
def test_a_refused_field_fails_the_pod_by_name(p: dict[str, Any], path: str) -> None:
    exc = refusal(p)
    assert exc.path == path
    assert exc.message.startswith(f"{path} is not supported on this node: ")
    assert exc.field == re.sub(r"\[\d+\]", "[]", path)


def test_default_values_of_refused_fields_run() -> None:
    spec = {"hostUsers": True, "os": {"name": "linux"}, "activeDeadlineSeconds": None, "readinessGates": [],
            "enableServiceLinks": True, "schedulerName": "default-scheduler", "priority": 0,
            "tolerations": [{"key": "k", "operator": "Exists"}], "nodeSelector": {"a": "b"}, "securityContext": {},
            "volumes": [{"name": "v", "emptyDir": {}}]}
    plan = plan_pod(pod(spec, securityContext={"procMount": "Default"},
                        volumeMounts=[{"name": "v", "mountPath": "/v", "mountPropagation": "None"}],
                        resizePolicy=[{"resourceName": "cpu", "restartPolicy": "NotRequired"}]),
                    "edge-1", lambda key: None)
    assert plan.containers[0].name == "main"


def test_sysctls_outside_a_containers_namespaces_are_refused_by_name() -> None:
    exc = refusal(pod({"securityContext": {"sysctls": [{"name": "kernel.shm_rmid_forced", "value": "1"},
                                                          {"name": "vm.swappiness", "value": "10"}]}}))
    assert exc.reason == "SysctlForbidden"
    assert exc.path == "spec.securityContext.sysctls[1]"
    assert "'vm.swappiness' is not namespaced" in exc.message
    exc = refusal(pod({"hostNetwork": True, "securityContext": {"sysctls": [{"name": "net.ipv4.tcp_syncookies",
                                                                              "value": "0"}]}}))
    assert "not allowed with hostNetwork" in exc.message


def test_a_memory_empty_dir_takes_its_size_limit() -> None:
    plan = plan_pod(pod({"volumes": [{"name": "m", "emptyDir": {"medium": "Memory", "sizeLimit": "64Mi"}}]}),
                    "edge-1", lambda key: None)
    assert plan.volumes["m"].size_limit == 64 << 20


@pytest.mark.parametrize("spec", [{"securityContext": ["runAsUser"]}, {"containers": [{"name": "main", "image": "i",
                                                                                       "securityContext": "root"}]}])
def test_a_malformed_security_context_is_an_error_not_a_crash(spec: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="is not an object"):
        plan_pod({**pod(), "spec": {**pod()["spec"], **spec}}, "edge-1", lambda key: None)
