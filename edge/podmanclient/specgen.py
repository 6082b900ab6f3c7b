"""podman's SpecGenerator JSON for a container, built from typed options (what podman-py's keyword options
used to be translated into).

Field names and shapes are podman's (pkg/specgen): ``work_dir``, ``read_only_filesystem``, ``terminal``,
``resource_limits.memory.limit``, namespaces as ``{"nsmode": ...}``, bind mounts as ``{"destination",
"source", "type", "options"}``. Empty values are left out, as podman-py left them out (podman takes an absent
field and an empty one alike); False and 0 stay. tests/unit/test_podman_specgen.py compares every option set
EdgeD uses with podman-py's own translation.

CPU limits: podman-py dropped ``nano_cpus`` without a word, so EdgeD never sent the CPU limit it said it
honoured. It goes now as kubelet sets it: a CFS quota per ``CPU_PERIOD_US`` (``cpu_quota_us``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

CPU_PERIOD_US = 100_000
"""The CFS period kubelet uses (its cpuCFSQuotaPeriod default): the quota is a share of it."""
MIN_QUOTA_US = 1_000
"""The smallest quota kubelet sets (the kernel refuses less than 1 ms)."""


def cpu_quota_us(nano_cpus: int | None) -> int | None:
    """kubelet's milliCPUToQuota: a limit of ``nano_cpus`` (1e9 a CPU) as microseconds per ``CPU_PERIOD_US``;
    None without a limit."""
    if not nano_cpus:
        return None
    return max(MIN_QUOTA_US, nano_cpus * CPU_PERIOD_US // 1_000_000_000)


@dataclass(frozen=True)
class BindMount:
    source: str
    target: str
    read_only: bool


@dataclass(frozen=True)
class ContainerSpec:
    """What EdgeD sets on a container it creates. None (or empty): podman's (or the image's) default."""

    image: str
    name: str
    pod: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    env: Mapping[str, str] = field(default_factory=dict)
    mounts: Sequence[BindMount] = ()
    entrypoint: Sequence[str] | None = None
    command: Sequence[str] | None = None
    working_dir: str | None = None
    mem_limit: int | None = None
    cpu_quota_us: int | None = None
    """The CPU limit as a CFS quota per CPU_PERIOD_US (``cpu_quota_us``)."""
    init: bool | None = None
    privileged: bool | None = None
    read_only: bool | None = None
    read_write_tmpfs: bool | None = None
    no_new_privileges: bool | None = None
    stdin: bool | None = None
    tty: bool | None = None
    user: str | None = None
    groups: Sequence[str] = ()
    cap_add: Sequence[str] = ()
    cap_drop: Sequence[str] = ()
    seccomp_profile_path: str | None = None
    apparmor_profile: str | None = None
    selinux_opts: Sequence[str] = ()
    sysctls: Mapping[str, str] = field(default_factory=dict)
    pid_mode: str | None = None
    ipc_mode: str | None = None
    dns_servers: Sequence[str] = ()
    dns_searches: Sequence[str] = ()
    dns_options: Sequence[str] = ()
    extra_hosts: Mapping[str, str] = field(default_factory=dict)
    """name -> address, one address per name (``hostadd`` entries ``name:address``)."""


def container_json(spec: ContainerSpec) -> dict[str, Any]:
    """The SpecGenerator body of ``POST /libpod/containers/create`` for ``spec``."""
    body: dict[str, Any] = {
        "image": spec.image,
        "name": spec.name,
        "pod": spec.pod,
        "labels": dict(spec.labels),
        "env": dict(spec.env),
        "mounts": [_mount(m) for m in spec.mounts],
        "entrypoint": _list(spec.entrypoint),
        "command": _list(spec.command),
        "work_dir": spec.working_dir,
        "resource_limits": {
            "memory": {"limit": spec.mem_limit},
            "cpu": {"quota": spec.cpu_quota_us, "period": CPU_PERIOD_US} if spec.cpu_quota_us else None},
        "init": spec.init,
        "privileged": spec.privileged,
        "read_only_filesystem": spec.read_only,
        "read_write_tmpfs": spec.read_write_tmpfs,
        "no_new_privileges": spec.no_new_privileges,
        "stdin": spec.stdin,
        "terminal": spec.tty,
        "user": spec.user,
        "groups": list(spec.groups),
        "cap_add": list(spec.cap_add),
        "cap_drop": list(spec.cap_drop),
        "seccomp_profile_path": spec.seccomp_profile_path,
        "apparmor_profile": spec.apparmor_profile,
        "selinux_opts": list(spec.selinux_opts),
        "sysctl": dict(spec.sysctls),
        "pidns": {"nsmode": spec.pid_mode} if spec.pid_mode else None,
        "ipcns": {"nsmode": spec.ipc_mode} if spec.ipc_mode else None,
        "dns_server": list(spec.dns_servers),
        "dns_search": list(spec.dns_searches),
        "dns_option": list(spec.dns_options),
        "hostadd": [f"{name}:{address}" for name, address in spec.extra_hosts.items()],
    }
    return compact(body)


def compact(body: Mapping[str, Any], nested: bool = False) -> dict[str, Any]:
    """``body`` without None and empty values (nested maps walked; None dropped from lists; an empty string
    kept below the top level), the same canonical form podman-py sent."""
    out: dict[str, Any] = {}
    for key, given in body.items():
        value: Any = given
        if isinstance(given, Mapping):
            value = compact(given, nested=True)
        elif isinstance(given, list | tuple):
            value = [v for v in given if v is not None]
        if value is None or value in ([], {}) or (not nested and value == ""):
            continue
        out[key] = value
    return out


def _list(items: Sequence[str] | None) -> list[str] | None:
    return None if items is None else list(items)


def _mount(m: BindMount) -> dict[str, Any]:
    return {"destination": m.target, "options": ["ro"] if m.read_only else [], "source": m.source, "type": "bind"}
