"""A container's securityContext (merged with the pod's) as podman options. No I/O but a profile's existence.

Kubernetes gives a container runtime's default set of capabilities (containerd's,
which has AUDIT_WRITE, MKNOD and NET_RAW beyond podman's own default), so those
three are added for a root container unless the pod drops them: ``ping`` works as
on any cluster. podman makes the capabilities it adds ambient, effective for a
non-root user too: so the three are not added for one, and a capability a pod
adds explicitly is effective for its non-root user (Kubernetes would put it in
the bounding set only, where it is of no use without file capabilities).
An unset seccompProfile runs the runtime's default profile (kubelet's
SeccompDefault behaviour), the safe choice for a node nobody watches.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge.edged.hostfacts import HostFacts
from edge.edged.podfields import FieldRefused

EXTRA_DEFAULT_CAPS = ("AUDIT_WRITE", "MKNOD", "NET_RAW")
"""In containerd's (Kubernetes') default capability set and not in podman's."""

SECCOMP_POD_ANNOTATION = "seccomp.security.alpha.kubernetes.io/pod"
SECCOMP_CONTAINER_ANNOTATION = "container.seccomp.security.alpha.kubernetes.io/"
APPARMOR_ANNOTATION = "container.apparmor.security.beta.kubernetes.io/"

NAMESPACED_SYSCTLS = re.compile(r"^(kernel\.shm[a-z_]*|kernel\.msg[a-z_]*|kernel\.sem|fs\.mqueue\..+|net\..+)$")
"""The sysctls whose namespace a container has of its own (podman's and runc's list); any other changes the host."""
IPC_SYSCTLS = re.compile(r"^(kernel\.shm|kernel\.msg|kernel\.sem|fs\.mqueue\.)")
_CAPABILITY = re.compile(r"^(CAP_)?[A-Z_]+$")


@dataclass(frozen=True)
class ContainerSecurity:
    """What podman must be told; the defaults are podman's defaults (a root container, as the image says)."""

    run_as_user: int | None = None
    run_as_group: int | None = None
    run_as_non_root: bool = False
    groups: tuple[int, ...] = ()
    privileged: bool = False
    cap_add: tuple[str, ...] = ()
    cap_drop: tuple[str, ...] = ()
    default_caps: tuple[str, ...] = EXTRA_DEFAULT_CAPS
    """Kubernetes' defaults podman lacks, not dropped: added for a root container only."""
    read_only: bool = False
    no_new_privileges: bool = False
    seccomp: str = ""
    """"" for the runtime's default, ``unconfined``, or the path of a Localhost profile."""
    apparmor: str = ""
    """"" for the runtime's default, ``unconfined``, or a loaded profile's name."""
    selinux: tuple[str, ...] = ()
    sysctls: dict[str, str] = field(default_factory=dict)


def _int(value: Any, path: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{path} must be a non-negative integer, not {value!r}")
    return value


def _caps(names: Any, path: str) -> list[str]:
    out = []
    for name in names or []:
        text = str(name).upper()
        if text != "ALL" and not _CAPABILITY.match(text):
            raise ValueError(f"{path}: {name!r} is not a capability name")
        out.append(text.removeprefix("CAP_"))
    return out


def _capabilities(sc: Mapping[str, Any], path: str) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    """(add, drop, the defaults podman lacks and the spec does not drop)."""
    caps = sc.get("capabilities") or {}
    if not isinstance(caps, Mapping):
        raise ValueError(f"{path}.capabilities is not an object")
    add = _caps(caps.get("add"), f"{path}.capabilities.add")
    drop = _caps(caps.get("drop"), f"{path}.capabilities.drop")
    if "ALL" in drop:
        return tuple(dict.fromkeys(add)), ("ALL",), ()
    return (tuple(dict.fromkeys(c for c in add if c not in drop)), tuple(dict.fromkeys(drop)),
            tuple(c for c in EXTRA_DEFAULT_CAPS if c not in drop))


def _seccomp(profile: Mapping[str, Any] | None, annotation: str | None, path: str, facts: HostFacts) -> str:
    if profile:
        kind = profile.get("type")
        local = profile.get("localhostProfile") or ""
    elif annotation:  # the v1.19 annotations, still honoured by a v1.20 kubelet when the field is unset
        kind = {"runtime/default": "RuntimeDefault", "docker/default": "RuntimeDefault",
                "unconfined": "Unconfined"}.get(annotation, "Localhost" if annotation.startswith("localhost/") else "")
        local = annotation.removeprefix("localhost/")
    else:
        return ""
    if kind == "RuntimeDefault":
        return ""
    if kind == "Unconfined":
        return "unconfined"
    if kind == "Localhost":
        base = Path(facts.seccomp_dir)
        target = base / str(local)
        if not local or ".." in Path(str(local)).parts or not target.is_file():
            raise FieldRefused(path, f"the Localhost profile {local!r} is not a file under {base}")
        return str(target)
    raise FieldRefused(path, f"type {kind!r} is not RuntimeDefault, Unconfined or Localhost")


def _apparmor(profile: Mapping[str, Any] | None, annotation: str | None, path: str, facts: HostFacts) -> str:
    if profile:
        kind, local = profile.get("type"), str(profile.get("localhostProfile") or "")
    elif annotation:
        kind = {"runtime/default": "RuntimeDefault", "unconfined": "Unconfined"}.get(
            annotation, "Localhost" if annotation.startswith("localhost/") else "")
        local = annotation.removeprefix("localhost/")
    else:
        return ""
    if kind == "Unconfined":
        return "unconfined"
    if kind not in ("RuntimeDefault", "Localhost"):
        raise FieldRefused(path, f"AppArmor profile type {kind!r} is not RuntimeDefault, Unconfined or Localhost")
    if not facts.apparmor:
        raise FieldRefused(path, "AppArmor is not enabled on this host", reason="AppArmor",
                           message=f"{path}: Cannot enforce AppArmor: AppArmor is not enabled on the host")
    return local if kind == "Localhost" else ""


def _selinux(options: Mapping[str, Any] | None, path: str, facts: HostFacts) -> tuple[str, ...]:
    if not options:
        return ()
    if not facts.selinux:
        raise FieldRefused(path, "SELinux is not enabled on this host")
    return tuple(f"{key}:{options[name]}" for name, key in
                 (("user", "user"), ("role", "role"), ("type", "type"), ("level", "level")) if options.get(name))


def sysctls(spec: Mapping[str, Any]) -> dict[str, str]:
    """The pod's sysctls, each namespaced and not in a namespace the pod shares with the host."""
    out: dict[str, str] = {}
    for i, item in enumerate((spec.get("securityContext") or {}).get("sysctls") or []):
        name, value = str(item.get("name", "")), str(item.get("value", ""))
        path = f"spec.securityContext.sysctls[{i}]"
        why = ""
        if not NAMESPACED_SYSCTLS.match(name):
            why = f"sysctl {name!r} is not namespaced: setting it would change the whole node"
        elif name.startswith("net.") and spec.get("hostNetwork"):
            why = f"sysctl {name!r} is not allowed with hostNetwork"
        elif IPC_SYSCTLS.match(name) and spec.get("hostIPC"):
            why = f"sysctl {name!r} is not allowed with hostIPC"
        if why:
            raise FieldRefused(path, why, reason="SysctlForbidden")
        out[name] = value
    return out


def fs_group(spec: Mapping[str, Any]) -> int | None:
    """The group that owns the pod's volume files (a Memory emptyDir's too: EdgeD mounts its tmpfs itself)."""
    return _int((spec.get("securityContext") or {}).get("fsGroup"), "fsGroup")


def plan_security(pod: Mapping[str, Any], index: int, facts: HostFacts, kind: str = "containers"
                  ) -> ContainerSecurity:
    """The security of container ``index`` of ``spec[kind]``: its securityContext over the pod's."""
    spec = pod.get("spec") or {}
    container = (spec.get(kind) or [])[index]
    annotations = (pod.get("metadata") or {}).get("annotations") or {}
    pod_sc = spec.get("securityContext") or {}
    sc = container.get("securityContext") or {}
    path = f"spec.{kind}[{index}].securityContext"

    def merged(name: str) -> tuple[Any, str]:
        return (sc[name], f"{path}.{name}") if sc.get(name) is not None else (
            pod_sc.get(name), f"spec.securityContext.{name}")

    run_as_user = _int(merged("runAsUser")[0], "runAsUser")
    run_as_group = _int(merged("runAsGroup")[0], "runAsGroup")
    fs_group = _int(pod_sc.get("fsGroup"), "fsGroup")
    groups = [_int(g, "supplementalGroups") for g in pod_sc.get("supplementalGroups") or []]
    if fs_group is not None:
        groups.append(fs_group)
    privileged = bool(sc.get("privileged"))
    cap_add, cap_drop, default_caps = _capabilities(sc, path)
    name = str(container.get("name", ""))
    seccomp_value, seccomp_path = merged("seccompProfile")
    seccomp_note = annotations.get(SECCOMP_CONTAINER_ANNOTATION + name) or annotations.get(SECCOMP_POD_ANNOTATION)
    apparmor_value, apparmor_path = merged("appArmorProfile")
    apparmor_note = annotations.get(APPARMOR_ANNOTATION + name)
    selinux_value, selinux_path = merged("seLinuxOptions")
    return ContainerSecurity(
        run_as_user=run_as_user, run_as_group=run_as_group,
        run_as_non_root=bool(merged("runAsNonRoot")[0]),
        groups=tuple(dict.fromkeys(g for g in groups if g is not None)),
        privileged=privileged,
        cap_add=() if privileged else cap_add, cap_drop=() if privileged else cap_drop,
        default_caps=() if privileged else default_caps,
        read_only=bool(sc.get("readOnlyRootFilesystem")),
        no_new_privileges=sc.get("allowPrivilegeEscalation") is False,
        seccomp="" if privileged else _seccomp(seccomp_value, seccomp_note, seccomp_path, facts),
        apparmor=_apparmor(apparmor_value, apparmor_note,
                           apparmor_path if apparmor_value else f"metadata.annotations[{APPARMOR_ANNOTATION}{name}]",
                           facts),
        selinux=_selinux(selinux_value, selinux_path, facts),
        sysctls=sysctls(spec),
    )


def image_uid(image_user: str) -> str:
    """The user part of an image's ``User`` (``uid``, ``name``, ``uid:gid``); empty means root."""
    return image_user.split(":", 1)[0] or "0"


def podman_user(security: ContainerSecurity, image_user: str) -> str | None:
    """podman's ``user`` (``uid[:gid]``), or None to run as the image says."""
    if security.run_as_user is None and security.run_as_group is None:
        return None
    uid = str(security.run_as_user) if security.run_as_user is not None else image_uid(image_user)
    return uid if security.run_as_group is None else f"{uid}:{security.run_as_group}"


def podman_caps(security: ContainerSecurity, image_user: str) -> tuple[list[str], list[str]]:
    """podman's (cap_add, cap_drop): Kubernetes' default set for a root container, the spec's add and drop."""
    user = podman_user(security, image_user)
    root = (user.split(":", 1)[0] if user is not None else image_uid(image_user)) in ("0", "root")
    add = [*(security.default_caps if root else ()), *security.cap_add]
    return list(dict.fromkeys(add)), list(security.cap_drop)


def non_root_violation(security: ContainerSecurity, image_user: str, pod: str, container: str) -> str | None:
    """kubelet's runAsNonRoot check before a container is created: its message, or None if the user is not root."""
    if not security.run_as_non_root:
        return None
    where = f"(pod: {pod!r}, container: {container})"
    if security.run_as_user is not None:
        return f"container's runAsUser breaks non-root policy {where}" if security.run_as_user == 0 else None
    uid = image_uid(image_user)
    if not uid.isdigit():
        return (f"container has runAsNonRoot and image has non-numeric user ({uid}), cannot verify user is "
                f"non-root {where}")
    return f"container has runAsNonRoot and image will run as root {where}" if int(uid) == 0 else None
