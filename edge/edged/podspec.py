"""From a Kubernetes Pod to what podman must create, as a kubelet would read the spec. No I/O here.

The pod's ConfigMaps and Secrets come in as plain maps (``lookup``), so every
rule (env from keys, envFrom, volume files, quantities, image pull policy) can be
tested with nothing running. A spec this node cannot honour raises
``PodSpecError`` with the reason a user will see in the pod's status.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

from edge.edged import podfields
from edge.edged.claims import ClaimRefused, ClaimWaiting, claimed_volume
from edge.edged.handlerspec import Handler, HandlerSpecError, Probe, named_ports, read_handler, read_probe
from edge.edged.hostfacts import HostFacts
from edge.edged.hostpaths import HOST_PATH_TYPES
from edge.edged.memorydirs import tmpfs_size
from edge.edged.podfields import FieldRefused
from edge.edged.podhost import PodHost, plan_host
from edge.edged.projection import (
    SOURCES,
    NodeSide,
    ProjectionError,
    env_field,
    pod_address_env,
    projected_files,
    resource_value,
)
from edge.edged.pullsecrets import secret_keys
from edge.edged.quantity import quantity
from edge.edged.security import ContainerSecurity, fs_group, plan_security
from edge.errors import EdgeError
from edge.podlabels import NAMESPACE_LABEL, NODE_LABEL, POD_LABEL, UID_LABEL
from schemas.kubeobj import meta
from schemas.resource import ResourceKey

DEFAULT_GRACE_S = 30
DEFAULT_TERMINATION_MESSAGE_PATH = "/dev/termination-log"


class PodSpecError(EdgeError, ValueError):
    """The pod cannot run on this node as written; ``reason`` is the kubelet-style reason."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


class ConfigError(PodSpecError):
    """A referenced ConfigMap or Secret (or key) is missing: the container waits, as kubelet's does (an unbound
    claim too, as ContainerCreating)."""

    def __init__(self, message: str, reason: str = "CreateContainerConfigError") -> None:
        super().__init__(reason, message)


Lookup = Callable[[ResourceKey], dict[str, Any] | None]
"""Returns the stored ConfigMap or Secret for a key, or None."""


@dataclass(frozen=True)
class FileSet:
    """Files of a configMap or secret volume: relative path -> (content, mode)."""

    files: dict[str, tuple[bytes, int]]


@dataclass(frozen=True)
class Mount:
    volume: str
    target: str
    read_only: bool
    sub_path: str = ""


@dataclass(frozen=True)
class VolumePlan:
    name: str
    kind: str  # configMap | secret | emptyDir | hostPath | local (a directory that must exist: never made here)
    source: ResourceKey | None = None  # for configMap and secret
    host_path: str = ""  # for hostPath and local
    memory: bool = False  # emptyDir medium Memory
    files: FileSet | None = None  # for configMap and secret
    read_only: bool = False  # every mount of it (persistentVolumeClaim.readOnly)
    size_limit: int | None = None  # emptyDir medium Memory: the tmpfs's size (memorydirs.py; a disk one's is refused)
    host_path_type: str = ""  # hostPath.type, checked on the host when the volume is set up (hostpaths.py)


@dataclass(frozen=True)
class ContainerPlan:
    name: str
    image: str
    pull_policy: str
    entrypoint: list[str] | None
    command: list[str] | None
    env: dict[str, str]
    mounts: list[Mount]
    working_dir: str | None
    mem_limit: int | None
    nano_cpus: int | None
    spec_hash: str
    liveness: Probe | None
    readiness: Probe | None
    startup: Probe | None = None
    post_start: Handler | None = None
    pre_stop: Handler | None = None
    termination_message_path: str = DEFAULT_TERMINATION_MESSAGE_PATH
    termination_message_policy: str = "File"  # or FallbackToLogsOnError
    init: bool = False
    """An init container: runs to completion, in order, before the app containers start."""
    security: ContainerSecurity = field(default_factory=ContainerSecurity)
    stdin: bool = False
    tty: bool = False
    pod_ip_env: tuple[str, ...] = ()
    """Env vars set to the pod's address when the container is created (projection.pod_address_env)."""


@dataclass(frozen=True)
class PodPlan:
    key: ResourceKey
    uid: str
    podman_name: str
    labels: dict[str, str]
    restart_policy: str
    grace_s: int
    ports: list[dict[str, Any]]
    host_network: bool
    containers: list[ContainerPlan]
    volumes: dict[str, VolumePlan] = field(default_factory=dict)
    config_refs: frozenset[ResourceKey] = frozenset()
    pull_secrets: tuple[ResourceKey, ...] = ()  # spec.imagePullSecrets, in order
    init_containers: list[ContainerPlan] = field(default_factory=list)
    host: PodHost = field(default_factory=PodHost)
    fs_group: int | None = None
    """The group that owns the pod's volume files (securityContext.fsGroup)."""


def podman_pod_name(namespace: str, name: str) -> str:
    """Kubernetes names never contain ``_``, so this cannot collide."""
    return f"{namespace}_{name}"


def container_name(namespace: str, pod: str, container: str, attempt: int) -> str:
    return f"{namespace}_{pod}_{container}_{attempt}"


def parse_quantity(text: Any, what: str) -> float:
    """A Kubernetes quantity (``128Mi``, ``500m``, ``2``) as a number of base units."""
    value = quantity(text)
    if value is None:
        raise PodSpecError("InvalidSpec", f"{what} {text!r} is not a Kubernetes quantity (e.g. 128Mi, 500m)")
    return value


def _decode_secret(value: Any) -> bytes:
    try:
        return base64.b64decode(str(value), validate=True)
    except ValueError:
        raise PodSpecError("InvalidSecret", "a secret value is not base64") from None


def config_data(obj: dict[str, Any], secret: bool) -> dict[str, bytes]:
    """The key -> bytes content of a ConfigMap (data + binaryData) or Secret (base64 data + stringData)."""
    out: dict[str, bytes] = {}
    if secret:
        for k, v in (obj.get("data") or {}).items():
            out[k] = _decode_secret(v)
        for k, v in (obj.get("stringData") or {}).items():
            out[k] = str(v).encode()
    else:
        for k, v in (obj.get("data") or {}).items():
            out[k] = str(v).encode()
        for k, v in (obj.get("binaryData") or {}).items():
            out[k] = base64.b64decode(str(v))
    return out


class _Resolver:
    """Fetches the ConfigMaps and Secrets a pod refers to, remembering which; holds what the downward API and
    token projections read (the pod, the node's side)."""

    def __init__(self, namespace: str, lookup: Lookup, pod: dict[str, Any] | None = None,
                 side: NodeSide | None = None) -> None:
        self.namespace = namespace
        self.lookup = lookup
        self.refs: set[ResourceKey] = set()
        self.pod = pod or {}
        self.side = side or NodeSide()

    def data(self, kind: str, name: Any, optional: bool) -> dict[str, bytes] | None:
        if not isinstance(name, str) or not name:
            raise PodSpecError("InvalidSpec", f"a {kind} reference has no name")
        key = ResourceKey(self.namespace, kind, name)
        self.refs.add(key)
        obj = self.lookup(key)
        if obj is None:
            if optional:
                return None
            raise ConfigError(f'{kind} "{name}" not found')
        return config_data(obj, secret=kind == "secret")


def _projected(what: str, project: Callable[..., Any], *args: Any) -> Any:
    """A projection.py call, its errors made the pod's: a refusal, or a wait (CreateContainerConfigError)."""
    try:
        return project(*args)
    except ProjectionError as exc:
        if exc.waiting:
            raise ConfigError(exc.message) from None
        raise PodSpecError("InvalidSpec", f"{what}: {exc.message}") from None


def _relative(files: dict[str, tuple[bytes, int]]) -> dict[str, tuple[bytes, int]]:
    return {_safe_relative(path): content for path, content in files.items()}


def _env(container: dict[str, Any], pod: dict[str, Any], resolver: _Resolver, node: str) -> dict[str, str]:
    env: dict[str, str] = {}
    for source in container.get("envFrom") or []:
        prefix = source.get("prefix", "")
        for kind, ref_name in (("configmap", "configMapRef"), ("secret", "secretRef")):
            ref = source.get(ref_name)
            if ref is not None:
                data = resolver.data(kind, ref.get("name"), bool(ref.get("optional")))
                for k, v in (data or {}).items():
                    env[prefix + k] = v.decode(errors="replace")
    for item in container.get("env") or []:
        name = item.get("name")
        if not isinstance(name, str) or not name:
            raise PodSpecError("InvalidSpec", "an env entry has no name")
        if "value" in item:
            env[name] = str(item["value"])
            continue
        source = item.get("valueFrom") or {}
        for kind, ref_name in (("configmap", "configMapKeyRef"), ("secret", "secretKeyRef")):
            ref = source.get(ref_name)
            if ref is None:
                continue
            optional = bool(ref.get("optional"))
            data = resolver.data(kind, ref.get("name"), optional)
            key = ref.get("key")
            if data is not None and key in data:
                env[name] = data[key].decode(errors="replace")
            elif not optional:
                raise ConfigError(f'couldn\'t find key {key} in {kind} {resolver.namespace}/{ref.get("name")}')
        if source.get("fieldRef") is not None:
            env[name] = _projected(f"env {name}", env_field, pod, source["fieldRef"].get("fieldPath"), node,
                                   resolver.side)
        if source.get("resourceFieldRef") is not None:
            ref = source["resourceFieldRef"]
            env[name] = _projected(f"env {name}", resource_value, pod, ref.get("containerName") or
                                   container.get("name"), ref, resolver.side)
        env.setdefault(name, "")
    return env


def _files(source: dict[str, Any], data: dict[str, bytes] | None) -> FileSet:
    mode = int(source.get("defaultMode", 0o644))
    files: dict[str, tuple[bytes, int]] = {}
    if data is None:
        return FileSet(files)
    items = source.get("items")
    if items:
        for item in items:
            key, path = item.get("key"), item.get("path")
            if key not in data:
                if source.get("optional"):
                    continue
                raise ConfigError(f"key {key} not found for volume item {path}")
            files[_safe_relative(path)] = (data[key], int(item.get("mode", mode)))
    else:
        for key, content in data.items():
            files[_safe_relative(key)] = (content, mode)
    return FileSet(files)


def _safe_relative(path: Any) -> str:
    p = PurePosixPath(str(path))
    if p.is_absolute() or ".." in p.parts or str(path) in ("", ".") or p.parts[0].startswith(".."):
        # a first element starting with '..' is refused as the API server does: the volume's own names are
        # ..data and ..<timestamp> (atomicfiles.py)
        raise PodSpecError("InvalidSpec", f"volume path {path!r} must be relative, without '..' and not starting "
                                          "with '..'")
    return str(p)


def _claim(name: str, source: Any, resolver: _Resolver, node: str) -> VolumePlan:
    """A persistentVolumeClaim volume: the directory of the PersistentVolume it is bound to (edge/edged/claims.py)."""
    try:
        found = claimed_volume(name, source, resolver.namespace, node, resolver.lookup)
    except ClaimWaiting as exc:
        raise ConfigError(str(exc), reason="ContainerCreating") from None
    except ClaimRefused as exc:
        raise PodSpecError("InvalidSpec", str(exc)) from None
    resolver.refs.update((found.claim, found.volume))
    return VolumePlan(name, found.source_type, host_path=found.path, read_only=found.read_only,
                      host_path_type=found.host_path_type)


def _volumes(spec: dict[str, Any], resolver: _Resolver, node: str) -> dict[str, VolumePlan]:
    plans: dict[str, VolumePlan] = {}
    for index, vol in enumerate(spec.get("volumes") or []):
        name = vol.get("name")
        if not isinstance(name, str) or not name:
            raise PodSpecError("InvalidSpec", "a volume has no name")
        if "configMap" in vol:
            src = vol["configMap"]
            data = resolver.data("configmap", src.get("name"), bool(src.get("optional")))
            plans[name] = VolumePlan(name, "configMap", ResourceKey(resolver.namespace, "configmap", src.get("name")),
                                     files=_files(src, data))
        elif "secret" in vol:
            src = vol["secret"]
            data = resolver.data("secret", src.get("secretName"), bool(src.get("optional")))
            plans[name] = VolumePlan(name, "secret", ResourceKey(resolver.namespace, "secret", src.get("secretName")),
                                     files=_files({"defaultMode": 0o644, **src}, data))
        elif "projected" in vol:
            src = vol["projected"] or {}
            files: dict[str, tuple[bytes, int]] = {}
            mode = int(src.get("defaultMode", 0o644))
            for source_index, source in enumerate(src.get("sources") or []):
                for kind, field_name in (("configmap", "configMap"), ("secret", "secret")):
                    if field_name in source:
                        ref = source[field_name] or {}
                        data = resolver.data(kind, ref.get("name"), bool(ref.get("optional")))
                        files.update(_files({"defaultMode": mode, **ref}, data).files)
                files.update(_relative(_projected(f"volume {name}", projected_files, resolver.pod, name, source,
                                                  mode, resolver.side)))
                unsupported = sorted(k for k in source if k not in ("configMap", "secret", *SOURCES))
                if unsupported:
                    raise FieldRefused(f"spec.volumes[{index}].projected.sources[{source_index}].{unsupported[0]}",
                                       "the projected sources run here are configMap, secret, downwardAPI and "
                                       "serviceAccountToken")
            plans[name] = VolumePlan(name, "configMap", None, files=FileSet(files))
        elif "downwardAPI" in vol:
            plans[name] = VolumePlan(name, "configMap", None, files=FileSet(_relative(_projected(
                f"volume {name}", projected_files, resolver.pod, name, vol, 0o644, resolver.side))))
        elif "emptyDir" in vol:
            limit = (vol["emptyDir"] or {}).get("sizeLimit")
            memory = (vol["emptyDir"] or {}).get("medium") == "Memory"
            size = tmpfs_size(spec, parse_quantity(limit, "emptyDir sizeLimit") if limit else None,
                              resolver.side.allocatable.get("memory")) if memory else None
            plans[name] = VolumePlan(name, "emptyDir", memory=memory, size_limit=size)
        elif "hostPath" in vol:
            path, kind = (vol["hostPath"] or {}).get("path"), (vol["hostPath"] or {}).get("type") or ""
            if not isinstance(path, str) or not path.startswith("/"):
                raise PodSpecError("InvalidSpec", f"volume {name}: hostPath.path must be absolute")
            if kind not in HOST_PATH_TYPES:
                raise PodSpecError("InvalidSpec", f"volume {name}: hostPath.type {kind!r} is not one of "
                                                  f"{', '.join(t for t in HOST_PATH_TYPES if t)}")
            plans[name] = VolumePlan(name, "hostPath", host_path=path, host_path_type=kind)
        elif "persistentVolumeClaim" in vol:
            plans[name] = _claim(name, vol["persistentVolumeClaim"], resolver, node)
        else:
            kinds = sorted(k for k in vol if k != "name")
            if not kinds:
                raise PodSpecError("InvalidSpec", f"volume {name}: no volume type is set")
            raise FieldRefused(f"spec.volumes[{index}].{kinds[0]}", "the volume types run here are configMap, "
                               "secret, projected, downwardAPI, emptyDir, hostPath and persistentVolumeClaim")
    return plans


_NOT_FOR_INIT = ("lifecycle", "livenessProbe", "readinessProbe", "startupProbe")


def _behaviour(container: dict[str, Any], where: str, init: bool) -> dict[str, Any]:
    """The container's probes, lifecycle hooks and termination message, as ContainerPlan fields."""
    if init:
        for name in _NOT_FOR_INIT:
            if container.get(name) is not None:
                raise PodSpecError("InvalidSpec", f"{where}.{name}: must not be set for init containers")
    ports = named_ports(container)
    lifecycle = container.get("lifecycle") or {}
    path = container.get("terminationMessagePath") or DEFAULT_TERMINATION_MESSAGE_PATH
    policy = container.get("terminationMessagePolicy") or "File"
    try:
        if not isinstance(lifecycle, dict):
            raise HandlerSpecError(f"{where}.lifecycle must be a map")
        unknown = sorted(k for k in lifecycle if k not in ("postStart", "preStop"))
        if unknown:
            raise FieldRefused(f"{where}.lifecycle.{unknown[0]}", "only postStart and preStop hooks are run")
        # A tcpSocket hook is refused, not skipped: kubelet cannot run one either (the field is deprecated,
        # kept for compatibility), and a pod that asked for it should learn that its hook will never run.
        for key in ("postStart", "preStop"):
            if isinstance(lifecycle.get(key), dict) and "tcpSocket" in lifecycle[key]:
                raise FieldRefused(f"{where}.lifecycle.{key}.tcpSocket", "a hook runs exec or httpGet; kubelet "
                                   "does not run tcpSocket hooks either (the API keeps them for compatibility)")
        hooks = {field_name: read_handler(lifecycle[key], f"{where}.lifecycle.{key}", ports,
                                          allowed=("exec", "httpGet"))
                 for key, field_name in (("postStart", "post_start"), ("preStop", "pre_stop"))
                 if lifecycle.get(key) is not None}
        probes = {field_name: read_probe(container[key], f"{where}.{key}", ports, kind=field_name)
                  for key, field_name in (("livenessProbe", "liveness"), ("readinessProbe", "readiness"),
                                          ("startupProbe", "startup"))
                  if container.get(key) is not None}
    except HandlerSpecError as exc:
        raise PodSpecError("InvalidSpec", str(exc)) from None
    if not isinstance(path, str) or not path.startswith("/"):
        raise PodSpecError("InvalidSpec", f"{where}.terminationMessagePath must be an absolute path")
    if policy not in ("File", "FallbackToLogsOnError"):
        raise PodSpecError("InvalidSpec", f"{where}.terminationMessagePolicy must be File or FallbackToLogsOnError")
    return {"liveness": probes.get("liveness"), "readiness": probes.get("readiness"),
            "startup": probes.get("startup"), **hooks, "termination_message_path": path,
            "termination_message_policy": policy, "init": init}


def _pull_policy(container: dict[str, Any], image: str) -> str:
    policy = container.get("imagePullPolicy")
    if policy is None:
        tag = image.rsplit("/", 1)[-1]
        policy = "Always" if ":" not in tag or tag.endswith(":latest") else "IfNotPresent"
    if policy not in ("Always", "IfNotPresent", "Never"):
        raise PodSpecError("InvalidSpec", f"imagePullPolicy {policy!r} is not Always, IfNotPresent or Never")
    return str(policy)


def plan_pod(pod: dict[str, Any], node: str, lookup: Lookup, side: NodeSide | None = None, *,
             facts: HostFacts | None = None) -> PodPlan:
    """Everything needed to run ``pod``; raises PodSpecError (or ConfigError), or podfields.FieldRefused for a
    field this node does not honour, when it cannot run. ``side``: what the downward API and token projections
    read from the node (tokens.py, projection.py); ``facts``: what the host offers pods (none by default)."""
    pod_meta = meta(pod)
    spec = pod.get("spec")
    namespace, name, uid = pod_meta.namespace, pod_meta.name, pod_meta.uid
    if not isinstance(spec, dict) or not isinstance(namespace, str) or not isinstance(name, str):
        raise PodSpecError("InvalidSpec", "the pod has no spec, name or namespace")
    if not isinstance(uid, str) or not uid:
        raise PodSpecError("InvalidSpec", "the pod has no metadata.uid")
    containers = spec.get("containers")
    if not isinstance(containers, list) or not containers:
        raise PodSpecError("InvalidSpec", "spec.containers is empty")
    init_containers = spec.get("initContainers") or []
    if not isinstance(init_containers, list):
        raise PodSpecError("InvalidSpec", "spec.initContainers must be a list")
    podfields.check(spec)
    facts = facts or HostFacts()
    resolver = _Resolver(namespace, lookup, pod, side)
    volumes = _volumes(spec, resolver, node)
    restart_policy = spec.get("restartPolicy", "Always")
    if restart_policy not in ("Always", "OnFailure", "Never"):
        raise PodSpecError("InvalidSpec", f"restartPolicy {restart_policy!r} is not Always, OnFailure or Never")
    ports: list[dict[str, Any]] = []
    plans: list[ContainerPlan] = []
    init_plans: list[ContainerPlan] = []
    seen: set[str] = set()
    for index, c in enumerate([*init_containers, *containers]):
        init = index < len(init_containers)
        where = f"spec.initContainers[{index}]" if init else f"spec.containers[{index - len(init_containers)}]"
        cname, image = c.get("name"), c.get("image")
        if not isinstance(cname, str) or not cname or cname in seen:
            raise PodSpecError("InvalidSpec", f"container name {cname!r} is missing or repeated")
        seen.add(cname)
        if not isinstance(image, str) or not image:
            raise PodSpecError("InvalidSpec", f"container {cname} has no image")
        mounts = []
        for m in c.get("volumeMounts") or []:
            if m.get("name") not in volumes:
                raise PodSpecError("InvalidSpec", f"container {cname} mounts unknown volume {m.get('name')!r}")
            target = m.get("mountPath")
            if not isinstance(target, str) or not target.startswith("/"):
                raise PodSpecError("InvalidSpec", f"container {cname}: mountPath must be absolute")
            sub = m.get("subPath") or ""
            mounts.append(Mount(m["name"], target, bool(m.get("readOnly")), _safe_relative(sub) if sub else ""))
        for p in c.get("ports") or []:
            if p.get("hostPort"):
                ports.append({"container_port": int(p["containerPort"]), "host_port": int(p["hostPort"]),
                              "protocol": str(p.get("protocol", "TCP")).lower(),
                              **({"host_ip": p["hostIP"]} if p.get("hostIP") else {})})
        limits = (c.get("resources") or {}).get("limits") or {}
        mem = int(parse_quantity(limits["memory"], "memory limit")) if "memory" in limits else None
        cpu = int(parse_quantity(limits["cpu"], "cpu limit") * 1e9) if "cpu" in limits else None
        spec_hash = hashlib.sha256(json.dumps(c, sort_keys=True, default=str).encode()).hexdigest()[:16]
        (init_plans if init else plans).append(ContainerPlan(
            name=cname, image=image, pull_policy=_pull_policy(c, image),
            entrypoint=list(map(str, c["command"])) if c.get("command") else None,
            command=list(map(str, c["args"])) if c.get("args") else None,
            env=_env(c, pod, resolver, node), mounts=mounts, working_dir=c.get("workingDir"),
            mem_limit=mem, nano_cpus=cpu, spec_hash=spec_hash, **_behaviour(c, where, init),
            security=plan_security(pod, index if init else index - len(init_containers), facts,
                                   kind="initContainers" if init else "containers"),
            stdin=bool(c.get("stdin")), tty=bool(c.get("tty")), pod_ip_env=pod_address_env(pod, c),
        ))
    meta_grace = pod_meta.deletion_grace_period_seconds
    grace = meta_grace if meta_grace is not None else spec.get("terminationGracePeriodSeconds", DEFAULT_GRACE_S)
    labels = {NODE_LABEL: node, UID_LABEL: uid, NAMESPACE_LABEL: namespace, POD_LABEL: name}
    return PodPlan(
        key=ResourceKey(namespace, "pod", name), uid=uid, podman_name=podman_pod_name(namespace, name),
        labels=labels, restart_policy=restart_policy, grace_s=int(grace), ports=ports,
        host_network=bool(spec.get("hostNetwork")), containers=plans, volumes=volumes,
        config_refs=frozenset(resolver.refs), pull_secrets=secret_keys(spec, namespace),
        init_containers=init_plans, host=plan_host(pod, facts), fs_group=fs_group(spec),
    )
