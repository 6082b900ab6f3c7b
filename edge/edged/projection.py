"""What the pod learns about itself through files and environment: the downward API and service account tokens.

Kubelet's rules, read from the pod object and what the node knows (``NodeSide``): fieldRef paths,
resourceFieldRef with its divisor (a missing limit reads as the node's allocatable), the
``key="value"`` files of labels and annotations, and the token file of a ``serviceAccountToken``
projection, whose content comes from ``NodeSide.tokens`` (tokens.py keeps them). No I/O here but
``node_allocatable``, read once when EdgeD starts.

Errors are ProjectionError: pod spec hooks (podspec.py) turn them into the pod's refusal, or, for
one that the pod waits out (a token not obtained yet), into CreateContainerConfigError.
"""

from __future__ import annotations

import math
import re
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge.edged.node import capacity
from edge.edged.quantity import quantity
from edge.errors import EdgeError
from schemas.kubeobj import meta, spec_of
from schemas.tokens import MIN_EXPIRATION_S, TokenQuery, pod_service_account, projection_params

SOURCES = ("downwardAPI", "serviceAccountToken")
"""The projected volume sources handled here (configMap and secret are podspec.py's)."""

RESOURCES = ("cpu", "memory", "ephemeral-storage")


class ProjectionError(EdgeError, ValueError):
    """The pod's spec asks for something that cannot be projected; ``waiting``: not yet (the pod waits)."""

    def __init__(self, message: str, *, waiting: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.waiting = waiting


class TokenUnavailable(ProjectionError):
    """No token for a projection yet (the cloud cannot be asked, or refused): the pod waits, saying why."""

    def __init__(self, message: str) -> None:
        super().__init__(message, waiting=True)


TokenSource = Callable[[TokenQuery, str], bytes]
"""The token for a query, the projection's volume named for the error; raises TokenUnavailable."""


@dataclass(frozen=True)
class NodeSide:
    """What projections read from the node rather than the pod."""

    host_ip: str = ""
    allocatable: Mapping[str, float] = field(default_factory=dict)
    """cpu (cores), memory and ephemeral-storage (bytes): what a limit the pod does not set reads as."""
    tokens: TokenSource | None = None


def node_allocatable(data_dir: Path) -> dict[str, float]:
    """The node's cpu and memory as it reports them, and the size of the disk that holds pod data."""
    out = {name: value for name, text in capacity().items() if (value := quantity(text)) is not None}
    existing = data_dir
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    out["ephemeral-storage"] = float(shutil.disk_usage(existing).total)
    return out


# -- fields ------------------------------------------------------------------------------------------

_SUBSCRIPT = re.compile(r"^metadata\.(labels|annotations)\['([^']*)'\]$")
ENV_FIELDS = ("metadata.name", "metadata.namespace", "metadata.uid", "metadata.labels['<key>']",
              "metadata.annotations['<key>']", "spec.nodeName", "spec.serviceAccountName", "status.hostIP",
              "status.podIP", "status.podIPs")
POD_ADDRESS_FIELDS = ("status.podIP", "status.podIPs")
VOLUME_FIELDS = ("metadata.name", "metadata.namespace", "metadata.uid", "metadata.labels", "metadata.annotations",
                 "metadata.labels['<key>']", "metadata.annotations['<key>']")


def format_map(values: Mapping[str, str]) -> str:
    """Labels or annotations as kubelet writes them into a file: ``key="value"`` lines, sorted by key."""
    return "\n".join(f"{key}={_go_quote(values[key])}" for key in sorted(values))


def _go_quote(text: str) -> str:
    """A string as Go's %q writes it (kubelet's file format): escapes for quotes, backslashes, controls."""
    out = ['"']
    for char in text:
        if char in '"\\':
            out.append("\\" + char)
        elif char in _GO_ESCAPES:
            out.append(_GO_ESCAPES[char])
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\x{ord(char):02x}")
        elif not char.isprintable():
            out.append(f"\\u{ord(char):04x}" if ord(char) <= 0xFFFF else f"\\U{ord(char):08x}")
        else:
            out.append(char)
    out.append('"')
    return "".join(out)


_GO_ESCAPES = {"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\v": "\\v"}


def _metadata_field(pod: dict[str, Any], path: str) -> str | None:
    """The metadata paths both env and volumes take; None for any other path."""
    pod_meta = meta(pod)
    simple = {"metadata.name": pod_meta.name, "metadata.namespace": pod_meta.namespace, "metadata.uid": pod_meta.uid}
    if path in simple:
        return simple[path] or ""
    subscript = _SUBSCRIPT.match(path)
    if subscript is not None:
        values = pod_meta.labels if subscript.group(1) == "labels" else _annotations(pod)
        return values.get(subscript.group(2), "")
    return None


def _annotations(pod: dict[str, Any]) -> dict[str, str]:
    found = (pod.get("metadata") or {}).get("annotations") or {}
    return {str(k): str(v) for k, v in found.items()} if isinstance(found, dict) else {}


def pod_address_env(pod: dict[str, Any], container: dict[str, Any]) -> tuple[str, ...]:
    """The names of ``container``'s env vars whose value is the pod's address (fieldRef status.podIP or podIPs;
    one address, so both read the same): EdgeD fills them in when it creates the container, once the pod's
    sandbox runs and has its address (containeractions.py). None on the host's network (the node's address)."""
    if spec_of(pod).get("hostNetwork"):
        return ()
    last: dict[str, bool] = {}  # the last entry of a name is the one that counts, as in _env
    for item in container.get("env") or []:
        if isinstance(item, dict) and isinstance(item.get("name"), str):
            ref = ((item.get("valueFrom") or {}).get("fieldRef") or {}) if "value" not in item else {}
            last[item["name"]] = isinstance(ref, dict) and ref.get("fieldPath") in POD_ADDRESS_FIELDS
    return tuple(name for name, takes in last.items() if takes)


def volume_field(pod: dict[str, Any], path: Any) -> str:
    """A downwardAPI file's content for ``fieldRef.fieldPath``."""
    if path == "metadata.labels":
        return format_map(meta(pod).labels)
    if path == "metadata.annotations":
        return format_map(_annotations(pod))
    value = _metadata_field(pod, str(path))
    if value is None:
        raise ProjectionError(f"downwardAPI fieldRef {path!r} is not supported in volumes "
                              f"(supported: {', '.join(VOLUME_FIELDS)})")
    return value


def env_field(pod: dict[str, Any], path: Any, node: str, side: NodeSide) -> str:
    """An env var's value for ``valueFrom.fieldRef.fieldPath``, as kubelet resolves it."""
    value = _metadata_field(pod, str(path))
    if value is not None:
        return value
    if path == "spec.nodeName":
        return node
    if path == "spec.serviceAccountName":
        return str(spec_of(pod).get("serviceAccountName") or "")
    if path == "status.hostIP":
        return side.host_ip
    if path in POD_ADDRESS_FIELDS:
        # On the host's network the pod's address is the node's; otherwise podman gives the pod its address when
        # its sandbox starts: filled in when the container is created (pod_address_env), after the sandbox.
        return side.host_ip if spec_of(pod).get("hostNetwork") else ""
    raise ProjectionError(f"fieldRef {path!r} is not supported on this node (supported: {', '.join(ENV_FIELDS)})")


# -- resources -----------------------------------------------------------------------------------------

def resource_value(pod: dict[str, Any], container_name: Any, ref: Mapping[str, Any], side: NodeSide) -> str:
    """``resourceFieldRef``: a container's limit or request in units of ``divisor``, rounded up (kubelet's
    rule); a limit the container does not set reads as the node's allocatable."""
    spec = spec_of(pod)
    containers = [c for c in [*(spec.get("containers") or []), *(spec.get("initContainers") or [])]
                  if isinstance(c, dict) and c.get("name") == container_name]
    if not containers:
        raise ProjectionError(f"resourceFieldRef names container {container_name!r}, which the pod does not have")
    resource = str(ref.get("resource", ""))
    kind, _, name = resource.partition(".")
    if kind not in ("limits", "requests") or name not in RESOURCES:
        raise ProjectionError(f"resourceFieldRef resource {resource!r} is not supported (supported: "
                              f"{', '.join(f'{k}.{r}' for k in ('limits', 'requests') for r in RESOURCES)})")
    divisor_text = ref.get("divisor")
    divisor = 1.0 if divisor_text in (None, "", "0") else quantity(divisor_text)
    if divisor is None or divisor <= 0:
        raise ProjectionError(f"resourceFieldRef divisor {divisor_text!r} is not a positive quantity")
    given = ((containers[0].get("resources") or {}).get(kind) or {}).get(name)
    if given is not None:
        value = quantity(given)
        if value is None:
            raise ProjectionError(f"{resource} {given!r} is not a Kubernetes quantity")
    elif kind == "limits":
        value = side.allocatable.get(name, 0.0)
    else:
        value = 0.0
    if name == "cpu":  # in thousandths, as kubelet divides MilliValue()s
        return str(math.ceil(_whole(value * 1000) / _whole(divisor * 1000)))
    return str(math.ceil(_whole(value) / _whole(divisor)))


def _whole(number: float) -> int:
    """A quantity's integral value as Kubernetes takes it (rounded up), float noise ignored."""
    return math.ceil(round(number, 6))


# -- volumes -----------------------------------------------------------------------------------------

Files = dict[str, tuple[bytes, int]]


def downward_files(pod: dict[str, Any], src: Mapping[str, Any], default_mode: int, side: NodeSide) -> Files:
    """A downwardAPI volume's or projection's files: relative path -> (content, mode)."""
    mode = int(src.get("defaultMode", default_mode))
    files: Files = {}
    for item in src.get("items") or []:
        path = item.get("path")
        if not isinstance(path, str) or not path:
            raise ProjectionError("a downwardAPI item has no path")
        if item.get("fieldRef") is not None:
            content = volume_field(pod, (item["fieldRef"] or {}).get("fieldPath"))
        elif item.get("resourceFieldRef") is not None:
            ref = item["resourceFieldRef"] or {}
            content = resource_value(pod, ref.get("containerName"), ref, side)
        else:
            raise ProjectionError(f"downwardAPI item {path} has neither fieldRef nor resourceFieldRef")
        files[path] = (content.encode(), int(item.get("mode", mode)))
    return files


def token_files(pod: dict[str, Any], volume: str, src: Mapping[str, Any], mode: int, side: NodeSide) -> Files:
    """A serviceAccountToken projection's one file: the pod's bound token, from ``side.tokens``."""
    path = src.get("path")
    if not isinstance(path, str) or not path:
        raise ProjectionError(f"volume {volume}: serviceAccountToken has no path")
    audiences, expiration = projection_params(src)
    if expiration < MIN_EXPIRATION_S:
        raise ProjectionError(f"volume {volume}: serviceAccountToken expirationSeconds must be at least "
                              f"{MIN_EXPIRATION_S}")
    if side.tokens is None:
        raise TokenUnavailable(f'MountVolume.SetUp failed for volume "{volume}": this node has no way to get '
                               "service account tokens")
    pod_meta = meta(pod)
    query = TokenQuery(pod_meta.namespace or "", pod_meta.name or "", pod_meta.uid or "", pod_service_account(pod),
                       audiences, expiration)
    return {path: (side.tokens(query, volume), mode)}


def projected_files(pod: dict[str, Any], volume: str, source: Mapping[str, Any], mode: int,
                    side: NodeSide) -> Files:
    """The files of one projected source of the SOURCES kinds (an empty map for any other)."""
    files: Files = {}
    if source.get("downwardAPI") is not None:
        files.update(downward_files(pod, source["downwardAPI"] or {}, mode, side))
    if source.get("serviceAccountToken") is not None:
        files.update(token_files(pod, volume, source["serviceAccountToken"] or {}, mode, side))
    return files
