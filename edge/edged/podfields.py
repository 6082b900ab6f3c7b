"""Every field of a v1 PodSpec, Container and (Pod)SecurityContext, and what this node does with it.

One table, so that no field is accepted and silently dropped: a field is honoured
here, honoured by the control plane (the scheduler, admission, controllers: the
node need not act), or refused. ``check`` fails a pod that sets a refused field to
anything but its default, and one that sets a field the table does not know (a
newer API than this node's), naming the field. Fields honoured only under some
values (a sysctl, a seccomp profile, SELinux options) are checked where they are
planned (security.py, podhost.py), which raise the same ``FieldRefused``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any

from edge.errors import EdgeError


class State(Enum):
    HONOURED = "honoured"
    CONTROL_PLANE = "control plane"
    REFUSED = "refused"


@dataclass(frozen=True)
class FieldRule:
    state: State
    note: str
    accepted: tuple[Any, ...] = ()
    """For a refused field: values besides the empty ones that are its default, and so run."""


def honoured(note: str) -> FieldRule:
    return FieldRule(State.HONOURED, note)


def control_plane(note: str) -> FieldRule:
    return FieldRule(State.CONTROL_PLANE, note)


def refused(note: str, *accepted: Any) -> FieldRule:
    return FieldRule(State.REFUSED, note, accepted)


class FieldRefused(EdgeError, ValueError):
    """A pod sets a field this node does not honour; ``field`` names it without indexes (the metric's label)."""

    def __init__(self, path: str, why: str, reason: str = "FieldNotSupported", message: str = "") -> None:
        self.path = path
        self.field = re.sub(r"\[[^\]]*\]", "[]", path)
        self.reason = reason
        self.message = message or f"{path} is not supported on this node: {why}"
        super().__init__(self.message)


POD_SPEC: dict[str, FieldRule] = {
    "activeDeadlineSeconds": refused("the pod deadline is not enforced by EdgeD"),
    "affinity": control_plane("the scheduler places the pod"),
    "automountServiceAccountToken": honoured("service-account token volume"),
    "containers": honoured("podman containers in the pod; see CONTAINER"),
    "dnsConfig": honoured("nameservers, searches, options in the pod's resolv.conf (podhost.py)"),
    "dnsPolicy": honoured("ClusterFirst has no cluster DNS at the edge: it falls back to Default, the node's "
                          "resolv.conf, as kubelet does without --cluster-dns (podhost.py)"),
    "enableServiceLinks": honoured("no Service reaches an edge node, so there are no service variables to add"),
    "ephemeralContainers": refused("ephemeral containers (kubectl debug) are not run by EdgeD"),
    "evictionResponders": refused("no eviction responders are called by EdgeD"),
    "hostAliases": honoured("entries in the pod's /etc/hosts (podhost.py)"),
    "hostIPC": honoured("every container joins the host's IPC namespace"),
    "hostNetwork": honoured("the pod's infra container uses the host's network namespace"),
    "hostPID": honoured("every container joins the host's PID namespace"),
    "hostUsers": refused("user namespaces (hostUsers: false) are not set up by EdgeD", True),
    "hostname": honoured("the pod's hostname"),
    "hostnameOverride": refused("EdgeD sets the hostname from hostname/subdomain only"),
    "imagePullSecrets": honoured("credentials for the pull"),
    "initContainers": honoured("run in order before the containers"),
    "nodeName": control_plane("the binding; EdgeD runs only pods bound to its node"),
    "nodeSelector": control_plane("the scheduler places the pod"),
    "os": refused("this node runs Linux containers only", {"name": "linux"}),
    "overhead": honoured("counted with the requests at admission (admission.py)"),
    "preemptionPolicy": control_plane("the scheduler's preemption"),
    "priority": control_plane("the scheduler's preemption"),
    "priorityClassName": control_plane("the Priority admission plugin sets priority"),
    "readinessGates": refused("EdgeD does not read the pod's own conditions, so a gate could never be met"),
    "resourceClaims": refused("dynamic resource allocation has no driver on this node"),
    "resources": refused("pod-level resources are not applied by EdgeD (container resources are)"),
    "restartPolicy": honoured("Always, OnFailure, Never"),
    "runtimeClassName": refused("this node has one runtime (podman) and no RuntimeClass handlers"),
    "schedulerName": control_plane("the scheduler that binds the pod"),
    "schedulingGates": control_plane("the scheduler waits for them"),
    "schedulingGroup": control_plane("the scheduler's gang scheduling"),
    "securityContext": honoured("see POD_SECURITY_CONTEXT (security.py)"),
    "serviceAccount": honoured("deprecated alias of serviceAccountName"),
    "serviceAccountName": honoured("the account of the pod's token, env fieldRef"),
    "setHostnameAsFQDN": honoured("the hostname is hostname.subdomain.namespace.svc.cluster.local (podhost.py)"),
    "shareProcessNamespace": honoured("the pod's containers share the infra container's PID namespace"),
    "subdomain": honoured("the FQDN of setHostnameAsFQDN; its DNS record is the cluster DNS's, absent at the edge"),
    "terminationGracePeriodSeconds": honoured("the stop timeout of the containers"),
    "tolerations": control_plane("the scheduler and the taint manager"),
    "topologySpreadConstraints": control_plane("the scheduler places the pod"),
    "volumes": honoured("configMap, secret, projected, downwardAPI, emptyDir (a Memory one a tmpfs per pod volume "
                        "that all its containers share, sized as kubelet sizes it: memorydirs.py), hostPath (every "
                        "type checked or made as kubelet does: hostpaths.py), persistentVolumeClaim; other types "
                        "refused by podspec.py"),
}

CONTAINER: dict[str, FieldRule] = {
    "args": honoured("podman command"),
    "command": honoured("podman entrypoint"),
    "env": honoured("value, configMapKeyRef, secretKeyRef, fieldRef, resourceFieldRef (projection.py); "
                    "status.podIP/podIPs: the pod's sandbox starts first, and its address is set when the "
                    "container is created (containeractions.py)"),
    "envFrom": honoured("configMapRef, secretRef, prefix"),
    "image": honoured("pulled as imagePullPolicy says"),
    "imagePullPolicy": honoured("Always, IfNotPresent, Never"),
    "lifecycle": honoured("postStart and preStop, exec and httpGet; tcpSocket handlers refused (hooks.py)"),
    "livenessProbe": honoured("exec, httpGet, tcpSocket, every timing field (handlerspec.py, probes.py)"),
    "name": honoured("the container's name in the pod"),
    "ports": honoured("hostPort/hostIP/protocol as podman port mappings; containerPort is informational"),
    "readinessProbe": honoured("exec, httpGet, tcpSocket, every timing field (handlerspec.py, probes.py)"),
    "resizePolicy": honoured("resources of a pod never change in place (no resize subresource in v1.20), so no "
                             "resize policy is ever applied"),
    "resources": honoured("cpu/memory limits as cgroup limits, requests at admission; see RESOURCES"),
    "restartPolicy": refused("sidecar init containers are not run by EdgeD: the pod's restartPolicy governs "
                             "every container"),
    "restartPolicyRules": refused("per-exit-code restart rules are not applied by EdgeD"),
    "securityContext": honoured("see SECURITY_CONTEXT (security.py)"),
    "startupProbe": honoured("gates liveness and readiness (probes.py)"),
    "stdin": honoured("podman keeps the container's stdin open"),
    # Measured on podman 4.3: conmon closes a container's stdin when an attach that carried stdin ends, however
    # it ends. That is stdinOnce's behaviour; without stdinOnce, kubelet would keep stdin open for the next
    # attach, which podman cannot, so the difference is named here and in the README instead of refusing every
    # stdin: true pod.
    "stdinOnce": honoured("stdin is closed when the first attach with stdin ends (podman does this for every "
                          "attach, so without stdinOnce a later attach finds stdin closed)"),
    "terminationMessagePath": honoured("read when the container ends"),
    "terminationMessagePolicy": honoured("File or FallbackToLogsOnError"),
    "tty": honoured("podman allocates a terminal"),
    "volumeDevices": refused("raw block volumes are not attached by EdgeD"),
    "volumeMounts": honoured("bind mounts of the pod's volumes; see VOLUME_MOUNT"),
    "workingDir": honoured("podman working directory"),
}

VOLUME_MOUNT: dict[str, FieldRule] = {
    "bindMountOptions": refused("bind mounts are made with EdgeD's own options only"),
    "mountPath": honoured("the target in the container"),
    "mountPropagation": refused("mounts are private to the container (propagation None only)", "None"),
    "name": honoured("the pod volume mounted"),
    "readOnly": honoured("a read-only bind mount"),
    "recursiveReadOnly": refused("recursive read-only mounts are not made by EdgeD", "Disabled"),
    "subPath": honoured("a path inside the volume"),
    "subPathExpr": refused("subPathExpr is not expanded by EdgeD; use subPath"),
}

RESOURCES: dict[str, FieldRule] = {
    "claims": refused("dynamic resource allocation has no driver on this node"),
    "limits": honoured("cpu and memory as cgroup limits; ephemeral-storage and others refused (admission.py)"),
    "requests": honoured("counted against the node's allocatable at admission (admission.py)"),
}

SECURITY_CONTEXT: dict[str, FieldRule] = {
    "allowPrivilegeEscalation": honoured("false sets no_new_privs"),
    "appArmorProfile": honoured("RuntimeDefault/Unconfined/Localhost when AppArmor is enabled, refused otherwise"),
    "capabilities": honoured("add/drop from the Kubernetes default set"),
    "privileged": honoured("podman privileged"),
    "procMount": refused("only the default masked /proc is mounted", "Default"),
    "readOnlyRootFilesystem": honoured("read-only root, without podman's writable /tmp"),
    "runAsGroup": honoured("primary group"),
    "runAsNonRoot": honoured("checked against runAsUser or the image's user before the container is created"),
    "runAsUser": honoured("the container's uid"),
    "seLinuxOptions": honoured("podman label options when SELinux is enabled, refused otherwise"),
    "seccompProfile": honoured("RuntimeDefault, Unconfined, Localhost under the node's seccomp directory"),
    "windowsOptions": refused("Windows options do not apply on this Linux node"),
}

POD_SECURITY_CONTEXT: dict[str, FieldRule] = {
    "appArmorProfile": SECURITY_CONTEXT["appArmorProfile"],
    "fsGroup": honoured("group of the files of emptyDir (disk and Memory), configMap, secret, projected, "
                        "downwardAPI and local PV volumes (setgid directories) and a supplemental group"),
    "fsGroupChangePolicy": honoured("Always and OnRootMismatch both end with the volume owned by fsGroup"),
    "runAsGroup": SECURITY_CONTEXT["runAsGroup"],
    "runAsNonRoot": SECURITY_CONTEXT["runAsNonRoot"],
    "runAsUser": SECURITY_CONTEXT["runAsUser"],
    "seLinuxChangePolicy": refused("volumes are never relabelled by EdgeD", "MountOption"),
    "seLinuxOptions": SECURITY_CONTEXT["seLinuxOptions"],
    "seccompProfile": SECURITY_CONTEXT["seccompProfile"],
    "supplementalGroups": honoured("extra groups of every container"),
    "supplementalGroupsPolicy": refused("the image's groups are always merged (policy Merge only)", "Merge"),
    "sysctls": honoured("namespaced sysctls podman sets; others refused by name (security.py)"),
    "windowsOptions": SECURITY_CONTEXT["windowsOptions"],
}

EPHEMERAL_CONTAINER: frozenset[str] = frozenset({
    "args", "command", "env", "envFrom", "image", "imagePullPolicy", "lifecycle", "livenessProbe", "name", "ports",
    "readinessProbe", "resizePolicy", "resources", "restartPolicy", "restartPolicyRules", "securityContext",
    "startupProbe", "stdin", "stdinOnce", "targetContainerName", "terminationMessagePath",
    "terminationMessagePolicy", "tty", "volumeDevices", "volumeMounts", "workingDir"})
"""Every field of an EphemeralContainer: all refused with ``spec.ephemeralContainers``."""


def is_unset(value: Any) -> bool:
    return value is None or value is False or value in ("", [], {})


def check_fields(obj: Mapping[str, Any], table: Mapping[str, FieldRule], path: str) -> None:
    """Refuse a field of ``obj`` the table refuses (set to a non-default value) or does not know."""
    if not isinstance(obj, Mapping):
        raise ValueError(f"{path} is not an object")
    for name, value in obj.items():
        rule = table.get(name)
        if rule is None:
            if is_unset(value):
                continue
            raise FieldRefused(f"{path}.{name}", "the field is unknown to this node")
        if rule.state is not State.REFUSED or value in rule.accepted:
            continue
        if is_unset(value) and not (value is False and True in rule.accepted):  # hostUsers: false is not unset
            continue
        raise FieldRefused(f"{path}.{name}", rule.note)


def _containers(spec: Mapping[str, Any], kind: str) -> list[dict[str, Any]]:
    items = spec.get(kind) or []
    return [c for c in items if isinstance(c, dict)] if isinstance(items, list) else []


def check(spec: Mapping[str, Any]) -> None:
    """Every field of a pod's spec, its containers, their mounts and security contexts, against the tables."""
    check_fields(spec, POD_SPEC, "spec")
    check_fields(spec.get("securityContext") or {}, POD_SECURITY_CONTEXT, "spec.securityContext")
    for i, volume in enumerate(spec.get("volumes") or []):
        empty_dir = volume.get("emptyDir") if isinstance(volume, dict) else None
        if empty_dir and empty_dir.get("sizeLimit") and empty_dir.get("medium") != "Memory":
            raise FieldRefused(f"spec.volumes[{i}].emptyDir.sizeLimit", "a disk emptyDir's size is not enforced by "
                               "EdgeD (kubelet evicts the pod; a Memory emptyDir's tmpfs takes the limit)")
    for kind in ("initContainers", "containers"):
        for i, c in enumerate(_containers(spec, kind)):
            where = f"spec.{kind}[{i}]"
            check_fields(c, CONTAINER, where)
            check_fields(c.get("securityContext") or {}, SECURITY_CONTEXT, f"{where}.securityContext")
            check_fields(c.get("resources") or {}, RESOURCES, f"{where}.resources")
            for j, m in enumerate(c.get("volumeMounts") or []):
                if isinstance(m, dict):
                    check_fields(m, VOLUME_MOUNT, f"{where}.volumeMounts[{j}]")


def table_rows() -> list[tuple[str, State, str]]:
    """(field, state, note) of every field, for the closing note and the docs."""
    rows: list[tuple[str, State, str]] = []
    for prefix, table in (("spec", POD_SPEC), ("spec.securityContext", POD_SECURITY_CONTEXT),
                          ("spec.containers[]", CONTAINER), ("spec.containers[].securityContext", SECURITY_CONTEXT),
                          ("spec.containers[].volumeMounts[]", VOLUME_MOUNT),
                          ("spec.containers[].resources", RESOURCES)):
        rows.extend((f"{prefix}.{name}", rule.state, rule.note) for name, rule in table.items())
    rows.extend((f"spec.ephemeralContainers[].{name}", State.REFUSED, POD_SPEC["ephemeralContainers"].note)
                for name in sorted(EPHEMERAL_CONTAINER))
    return rows
