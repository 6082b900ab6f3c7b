"""EdgeD's container-create JSON (edge.podmanclient.specgen) against podman-py's translation of the keyword
options EdgeD gave podman-py before it dropped it (issue 19), for every kind of option EdgeD sets.

``_podman_py_kwargs`` is EdgeD's former option building (edge/edged/runtime.py before the port), kept here as the
reference; podman-py's own ``_render_payload`` and ``prepare_body`` turn it into the JSON podman-py sent. Each
case is a pod spec planned by EdgeD's real planner (edge.edged.podspec.plan_pod), so what is compared is what
EdgeD would send for it. podman-py is a test dependency for this comparison (and the tests' fixtures) only.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from podman.api import prepare_body
from podman.domain.containers_create import CreateMixin

from edge.edged.hostfacts import HostFacts, ResolvConf
from edge.edged.podspec import ContainerPlan, PodPlan, container_name, plan_pod
from edge.edged.runtime import DEFAULT_PATH, HostMount, PodmanRuntime
from edge.edged.security import podman_caps, podman_user
from edge.podlabels import ATTEMPT_LABEL, CONTAINER_LABEL, HASH_LABEL, RESTARTS_ON_LABEL
from edge.podmanclient.specgen import CPU_PERIOD_US, container_json, cpu_quota_us
from edge.restarts import restarts_on
from schemas.resource import ResourceKey


class _Runtime(PodmanRuntime):
    """The runtime with the image facts it would ask podman for given here (no podman is asked)."""

    def __init__(self, image_user: str, image_path: bool) -> None:
        super().__init__("unix:///nonexistent/podman.sock", "edge-1")
        self._user, self._path = image_user, image_path

    def image_user(self, image: str) -> str:
        return self._user

    def _image_sets_path(self, image: str) -> bool:
        return self._path


def _podman_py_kwargs(rt: _Runtime, plan: PodPlan, container: ContainerPlan, attempt: int,
                      mounts: list[HostMount]) -> dict[str, Any]:
    """EdgeD's keyword options to podman-py's ``containers.create`` (runtime.py before issue 19), image first."""
    labels = {**plan.labels, CONTAINER_LABEL: container.name, ATTEMPT_LABEL: str(attempt),
              HASH_LABEL: container.spec_hash, RESTARTS_ON_LABEL: restarts_on(plan.restart_policy, container.init)}
    env = dict(container.env)
    if "PATH" not in env and not rt._image_sets_path(container.image):
        env["PATH"] = DEFAULT_PATH
    kwargs: dict[str, Any] = {
        "image": container.image,
        "name": container_name(plan.key.namespace or "-", plan.key.name, container.name, attempt),
        "pod": plan.podman_name, "init": True, "labels": labels, "environment": env,
        "mounts": [{"type": "bind", "source": m.source, "target": m.target, "read_only": m.read_only}
                   for m in mounts],
    }
    if container.entrypoint is not None:
        kwargs["entrypoint"] = container.entrypoint
    if container.command is not None:
        kwargs["command"] = container.command
    if container.working_dir:
        kwargs["working_dir"] = container.working_dir
    if container.mem_limit:
        kwargs["mem_limit"] = container.mem_limit
    if container.nano_cpus:
        kwargs["nano_cpus"] = container.nano_cpus  # podman-py drops it: see edge.podmanclient.specgen
    sec = container.security
    image_user = rt.image_user(container.image)
    kwargs.update({"privileged": sec.privileged, "read_only": sec.read_only, "read_write_tmpfs": False,
                   "no_new_privileges": sec.no_new_privileges, "stdin_open": container.stdin, "tty": container.tty})
    user = podman_user(sec, image_user)
    if user is not None:
        kwargs["user"] = user
    if sec.groups:
        kwargs["group_add"] = [str(g) for g in sec.groups]
    cap_add, cap_drop = podman_caps(sec, image_user)
    if cap_add:
        kwargs["cap_add"] = cap_add
    if cap_drop:
        kwargs["cap_drop"] = cap_drop
    if sec.seccomp:
        kwargs["seccomp_profile_path"] = sec.seccomp
    if sec.apparmor:
        kwargs["apparmor_profile"] = sec.apparmor
    if sec.selinux:
        kwargs["security_opt"] = [f"label={o}" for o in sec.selinux]
    if sec.sysctls:
        kwargs["sysctls"] = dict(sec.sysctls)
    if plan.host.host_pid:
        kwargs["pid_mode"] = "host"
    if plan.host.host_pid or plan.host.share_pid:
        kwargs["init"] = False
    if plan.host.host_ipc:
        kwargs["ipc_mode"] = "host"
    if plan.host_network:
        if plan.host.custom_dns:
            kwargs.update({"dns": list(plan.host.dns_servers), "dns_search": list(plan.host.dns_searches),
                           "dns_opt": list(plan.host.dns_options)})
        if plan.host.hosts:
            kwargs["extra_hosts"] = dict(plan.host.hosts)
    return kwargs


def _podman_py_json(kwargs: dict[str, Any]) -> dict[str, Any]:
    rendered: dict[str, Any] = json.loads(prepare_body(CreateMixin._render_payload(kwargs)))
    return rendered


CONFIG = {ResourceKey("ns", "configmap", "cfg"): {"data": {"a": "1"}}}
FACTS = HostFacts(selinux=True, apparmor=True, resolv=ResolvConf(("10.0.0.53",), ("example.org",), ("ndots:2",)))


def _pod(container: dict[str, Any], **spec: Any) -> dict[str, Any]:
    c = {"name": "main", "image": "localhost/busybox:latest", **container}
    return {"metadata": {"name": "p", "namespace": "ns", "uid": "u-1"}, "spec": {"containers": [c], **spec}}


CASES: dict[str, dict[str, Any]] = {
    "bare": _pod({}),
    "command, args, env, workingDir": _pod({
        "command": ["/bin/sh", "-c"], "args": ["echo $A"], "workingDir": "/tmp",
        "env": [{"name": "A", "value": "1"}, {"name": "PATH", "value": "/bin"}],
        "envFrom": [{"configMapRef": {"name": "cfg"}, "prefix": "CFG_"}]}),
    "args only, empty command": _pod({"command": [], "args": ["sleep", "1"]}),
    "limits": _pod({"resources": {"limits": {"memory": "64Mi", "cpu": "250m"}, "requests": {"cpu": "100m"}}}),
    "tty and stdin": _pod({"tty": True, "stdin": True}),
    "securityContext": _pod({"securityContext": {
        "runAsUser": 1000, "runAsGroup": 3000, "readOnlyRootFilesystem": True, "allowPrivilegeEscalation": False,
        "capabilities": {"add": ["NET_ADMIN", "SYS_TIME"], "drop": ["ALL"]},
        "seLinuxOptions": {"level": "s0:c123,c456", "type": "spc_t"},
        "appArmorProfile": {"type": "Unconfined"}, "seccompProfile": {"type": "Unconfined"}}},
        securityContext={"supplementalGroups": [4000, 5000], "fsGroup": 2000,
                         "sysctls": [{"name": "net.ipv4.ip_unprivileged_port_start", "value": "0"}]}),
    "privileged": _pod({"securityContext": {"privileged": True}}),
    "runtime default seccomp, nonroot": _pod({"securityContext": {"runAsNonRoot": True, "runAsUser": 10,
                                                                  "seccompProfile": {"type": "RuntimeDefault"}}}),
    "host namespaces, dns, hosts": _pod({}, hostNetwork=True, hostPID=True, hostIPC=True,
                                        dnsPolicy="ClusterFirstWithHostNet",
                                        dnsConfig={"nameservers": ["1.1.1.1"], "searches": ["a.example"],
                                                   "options": [{"name": "ndots", "value": "5"}]},
                                        hostAliases=[{"ip": "10.1.1.1", "hostnames": ["foo", "bar"]},
                                                     {"ip": "10.1.1.2", "hostnames": ["foo"]}]),
    "host network, dns None": _pod({}, hostNetwork=True, dnsPolicy="None",
                                   dnsConfig={"nameservers": ["9.9.9.9"]}),
    "shared process namespace": _pod({}, shareProcessNamespace=True),
    "pod network with dns and hosts (on the pod, not the container)": _pod(
        {}, dnsConfig={"nameservers": ["1.1.1.1"]}, hostAliases=[{"ip": "10.1.1.1", "hostnames": ["foo"]}]),
}
MOUNTS = [HostMount("/var/lib/edgehive/pods/u-1/volumes/cfg", "/etc/cfg", True),
          HostMount("/var/lib/edgehive/pods/u-1/volumes/data", "/data", False)]


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize(("image_user", "image_path"), [("", False), ("1234", True)])
@pytest.mark.parametrize("mounts", [[], MOUNTS], ids=["no-mounts", "mounts"])
def test_container_json_is_podman_pys(case: str, image_user: str, image_path: bool, mounts: list[HostMount]) -> None:
    plan = plan_pod(CASES[case], "edge-1", CONFIG.get, facts=FACTS)
    rt = _Runtime(image_user, image_path)
    for container in [*plan.init_containers, *plan.containers]:
        ours = container_json(rt.container_spec(plan, container, 3, mounts))
        theirs = _podman_py_json(_podman_py_kwargs(rt, plan, container, 3, mounts))
        if container.nano_cpus:  # the one option podman-py dropped (test below): ours sends it
            theirs["resource_limits"]["cpu"] = {"quota": cpu_quota_us(container.nano_cpus), "period": CPU_PERIOD_US}
        assert ours == theirs


def test_cases_cover_every_option_edged_sets() -> None:
    """Every field of the SpecGenerator EdgeD can send appears in at least one case (a field added to the spec
    without a case fails here)."""
    seen: set[str] = set()
    for case in CASES.values():
        plan = plan_pod(case, "edge-1", CONFIG.get, facts=FACTS)
        for user, path in (("", False), ("1234", True)):
            for container in plan.containers:
                seen |= set(container_json(_Runtime(user, path).container_spec(plan, container, 0, MOUNTS)))
    sent = {"image", "name", "pod", "labels", "env", "mounts", "entrypoint", "command", "work_dir",
            "resource_limits", "init", "privileged", "read_only_filesystem", "read_write_tmpfs", "no_new_privileges",
            "stdin", "terminal", "user", "groups", "cap_add", "cap_drop", "seccomp_profile_path", "apparmor_profile",
            "selinux_opts", "sysctl", "pidns", "ipcns", "dns_server", "dns_search", "dns_option", "hostadd"}
    assert seen == sent


def test_the_cpu_limit_podman_py_dropped_goes_as_kubelets_cfs_quota() -> None:
    """podman-py never sent EdgeD's CPU limit (nano_cpus): a 250m limit was no limit at all. Ours sends it as
    kubelet does, a quota of 25 ms per 100 ms period."""
    plan = plan_pod(CASES["limits"], "edge-1", CONFIG.get, facts=FACTS)
    container = plan.containers[0]
    assert container.nano_cpus == 250_000_000
    rendered = _podman_py_json(_podman_py_kwargs(_Runtime("", True), plan, container, 0, []))
    assert rendered["resource_limits"] == {"memory": {"limit": 64 * 1024 * 1024}}
    ours = container_json(_Runtime("", True).container_spec(plan, container, 0, []))
    assert ours["resource_limits"] == {"memory": {"limit": 64 * 1024 * 1024},
                                       "cpu": {"quota": 25_000, "period": 100_000}}


@pytest.mark.parametrize(("nano_cpus", "quota"), [(None, None), (0, None), (1_000_000, 1_000), (5_000_000, 1_000),
                                                  (250_000_000, 25_000), (2_000_000_000, 200_000)])
def test_cpu_quota_is_kubelets_millicpu_to_quota(nano_cpus: int | None, quota: int | None) -> None:
    assert cpu_quota_us(nano_cpus) == quota

