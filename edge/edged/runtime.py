"""The container runtime: podman's libpod REST API through edge.podmanclient (standard library only).

Pods and containers carry ``io.edgehive.*`` labels (node, pod UID, container,
attempt, spec hash), so that what runs can be matched to what is desired after
any restart of EdgeD, with no state of its own.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from edge.edged.nodeclaim import NodeClaim
from edge.edged.podspec import ContainerPlan, PodPlan, container_name
from edge.edged.security import podman_caps, podman_user
from edge.errors import EdgeError
from edge.podlabels import ATTEMPT_LABEL, CONTAINER_LABEL, HASH_LABEL, NODE_LABEL, RESTARTS_ON_LABEL, UID_LABEL
from edge.podmanclient.client import PodmanClient
from edge.podmanclient.specgen import BindMount, ContainerSpec, container_json, cpu_quota_us
from edge.podmanclient.transport import NotFound, PodmanError
from edge.restarts import restarts_on

log = logging.getLogger(__name__)

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class ContainerRuntimeError(EdgeError, RuntimeError):
    """podman refused or failed an operation; the message carries podman's own reason."""


class ImagePullError(ContainerRuntimeError):
    """The image could not be pulled."""


@dataclass(frozen=True)
class Observed:
    """One container as podman reports it."""

    id: str
    name: str
    pod_uid: str
    container: str
    attempt: int
    spec_hash: str
    state: str  # created | running | exited | stopped | paused | ...
    exit_code: int
    started_at: int  # seconds since the epoch, 0 if never
    finished_at: int
    image_id: str

    @property
    def running(self) -> bool:
        return self.state == "running"

    @property
    def finished(self) -> bool:
        return self.state in ("exited", "stopped") and self.started_at > 0


@dataclass(frozen=True)
class HostMount:
    source: str
    target: str
    read_only: bool


class PodmanRuntime:
    def __init__(self, url: str, node: str) -> None:
        self.url = url
        self.node = node
        self.client = PodmanClient(url)
        self._image_path: dict[str, bool] = {}
        self._image_user: dict[str, str] = {}
        self._claim: NodeClaim | None = None

    def close(self) -> None:
        """Lets the node's claim go (each call has a connection of its own: nothing else to release)."""
        if self._claim is not None:
            self._claim.release()
            self._claim = None

    def claim_node(self) -> None:
        """Make sure no other EdgeD serves this node on this podman's storage (edge/edged/nodeclaim.py); once
        claimed, the claim is held until close. NodeTaken when another has it, ContainerRuntimeError when podman
        cannot say where its storage is."""
        if self._claim is not None:
            return
        try:
            graph_root = str((self.client.info().get("store") or {}).get("graphRoot") or "")
        except PodmanError as exc:
            raise ContainerRuntimeError(f"cannot ask podman where its storage is: {exc}") from exc
        if not graph_root:
            raise ContainerRuntimeError("podman's info names no storage (store.graphRoot)")
        self._claim = NodeClaim.take(graph_root, self.node)

    def ping(self) -> bool:
        try:
            return self.client.ping()
        except PodmanError:
            return False

    def version(self) -> str | None:
        """The runtime's version (``4.3.1``), None when it does not answer."""
        try:
            return str(self.client.version().get("Version") or "") or None
        except PodmanError:
            return None

    # -- images -----------------------------------------------------------------------

    def image_present(self, image: str) -> bool:
        try:
            return self.client.image_exists(image)
        except PodmanError as exc:
            raise ContainerRuntimeError(f"cannot ask podman about image {image}: {exc}") from exc

    def pull(self, image: str, auths: Sequence[Mapping[str, str]] = ()) -> None:
        """Pull ``image`` with each of ``auths`` (username, password) in turn until one works; with none, without
        credentials (or those of podman's own login files). ImagePullError carries the registry's reason (the last
        one's, when every set was refused)."""
        failure: ImagePullError | None = None
        tries: Sequence[Mapping[str, str] | None] = auths or [None]
        for auth in tries:
            try:
                self._pull_once(image, auth)
                return
            except ImagePullError as exc:
                failure = exc
        assert failure is not None
        raise failure

    def _pull_once(self, image: str, auth: Mapping[str, str] | None) -> None:
        try:
            # Streamed: podman answers 200 and says what went wrong (the registry's 401) in the stream's last line.
            for line in self.client.pull(image, auth):
                if line.get("error"):
                    raise ImagePullError(f"failed to pull image {image!r}: {line['error']}")
        except PodmanError as exc:
            raise ImagePullError(f"failed to pull image {image!r}: {exc}") from exc
        if not self.image_present(image):  # a stream cut short says nothing of its failure
            raise ImagePullError(f"failed to pull image {image!r}: no such image after the pull (is the registry "
                            "reachable from this node?)")

    # -- pods ----------------------------------------------------------------------------

    def pods(self) -> dict[str, str]:
        """Podman pod name -> pod UID, for the pods of this node."""
        try:
            found = self.client.pods({"label": [f"{NODE_LABEL}={self.node}"]})
        except PodmanError as exc:
            raise ContainerRuntimeError(f"cannot list pods: {exc}") from exc
        return {str(p.get("Name", "")): str((p.get("Labels") or {}).get(UID_LABEL, "")) for p in found}

    def pod_uid(self, podman_name: str) -> str | None:
        """The pod UID of the podman pod ``podman_name`` (None: there is none): one pod inspected, where a list
        of every pod waits on every container podman is busy with."""
        try:
            pod = self.client.pod(podman_name)
        except NotFound:
            return None
        except PodmanError as exc:
            raise ContainerRuntimeError(f"cannot inspect pod {podman_name}: {exc}") from exc
        return str((pod.get("Labels") or {}).get(UID_LABEL, ""))

    def create_pod(self, plan: PodPlan) -> None:
        spec: dict[str, Any] = {"name": plan.podman_name, "labels": plan.labels}
        if plan.ports:
            spec["portmappings"] = plan.ports
        if plan.host_network:  # and the host's UTS namespace, as on a cluster: the pod's hostname is the node's
            spec["netns"] = spec["utsns"] = {"nsmode": "host"}
        else:  # a pod on the host's network takes dns and hosts per container: podman ignores them on such a pod
            spec["hostname"] = plan.host.hostname or plan.key.name
            spec.update(_pod_dns_and_hosts(plan))
        if plan.host.share_pid:
            spec["shared_namespaces"] = ["uts", "ipc", "net", "pid"]  # podman's default set, and pid
        try:
            self.client.create_pod(spec)
        except PodmanError as exc:
            raise ContainerRuntimeError(f"cannot create pod {plan.podman_name}: {exc}") from exc

    def start_pod(self, podman_name: str) -> None:
        try:
            self.client.start_pod(podman_name)
        except PodmanError as exc:
            raise ContainerRuntimeError(f"cannot start pod {podman_name}: {exc}") from exc

    def start_sandbox(self, podman_name: str) -> None:
        """Start the pod's infra container alone: the pod gets its address before its containers are made."""
        try:
            self.client.start_container(str(self.client.pod(podman_name)["InfraContainerID"]))
        except (KeyError, PodmanError) as exc:
            raise ContainerRuntimeError(f"cannot start the sandbox of pod {podman_name}: {exc}") from exc

    def remove_pod(self, podman_name: str, grace_s: int) -> None:
        """Stop every container with ``grace_s`` for SIGTERM to work, then remove the pod.

        The containers are stopped one by one (at once, each in a thread) before the pod: podman answers a
        stop of a pod some of whose containers have exited (an init container, a finished one: "Degraded")
        with 304 and stops nothing, and its forced removal then gives each container podman's own 10 s."""
        try:
            pod = self.client.pod(podman_name)
        except NotFound:
            return
        except PodmanError as exc:
            raise ContainerRuntimeError(f"cannot inspect pod {podman_name}: {exc}") from exc
        infra = pod.get("InfraContainerID")
        stops = [threading.Thread(target=self.stop_container, args=(c["Id"], grace_s), daemon=True)
                 for c in pod.get("Containers") or [] if c.get("State") == "running" and c.get("Id") != infra]
        for stop in stops:
            stop.start()
        for stop in stops:
            stop.join()
        try:
            self.client.stop_pod(podman_name, max(0, grace_s))
        except PodmanError as exc:
            log.warning("stopping pod %s: %s", podman_name, exc)
        try:
            self.client.remove_pod(podman_name, force=True)
        except NotFound:
            pass
        except PodmanError as exc:
            raise ContainerRuntimeError(f"cannot remove pod {podman_name}: {exc}") from exc

    def pod_ip(self, podman_name: str) -> str:
        try:
            infra = self.client.container(str(self.client.pod(podman_name)["InfraContainerID"]))
        except (KeyError, PodmanError):
            return ""
        settings = infra.get("NetworkSettings") or {}
        ip = settings.get("IPAddress") or ""
        if not ip:
            for network in (settings.get("Networks") or {}).values():
                ip = network.get("IPAddress") or ""
                if ip:
                    break
        return str(ip)

    def sandbox_running(self, podman_name: str) -> bool:
        """Whether the pod's infra container (what holds its network namespace) runs: after a reboot of the
        machine, or a stop of the whole pod, it does not."""
        try:
            infra = self.client.container(str(self.client.pod(podman_name)["InfraContainerID"]))
        except NotFound:
            return False
        except (KeyError, PodmanError) as exc:
            raise ContainerRuntimeError(f"cannot inspect pod {podman_name}: {exc}") from exc
        return (infra.get("State") or {}).get("Status") == "running"

    def sandbox_lost(self, podman_name: str) -> bool | None:
        """Whether podman says a container of the pod runs (its infra container or any other) while its process
        is gone; None when podman could not be asked (its service not answering yet after a power cut).

        podman learns that a container ended from its conmon; when conmon was SIGKILLed with it (a power cut
        that leaves /run, the OOM killer), podman says "running" for ever, and a pod start then fails on its
        dead sandbox. A signal that changes nothing (SIGCONT) goes to the OCI runtime itself, which refuses it
        for a container whose process is gone ("container state improper"). Every container podman calls
        running is asked, not only the infra container: the conmons do not all die at the same instant, and
        one that outlived its container by a moment recorded the end (the infra container then shows Exited)
        while the others, whose conmons died first, show running for ever; EdgeD reported such a pod Running."""
        try:
            pod = self.client.pod(podman_name)
        except NotFound:
            return False
        except PodmanError as exc:  # podman not answering: asked again at EdgeD's next pass; else the pod's sync's
            log.warning("cannot ask whether pod %s runs: %r", podman_name, exc)
            return None if not exc.status else False
        for container in pod.get("Containers") or []:
            if container.get("State") != "running":
                continue
            try:
                self.client.kill_container(str(container.get("Id", "")), "SIGCONT")
            except NotFound:
                continue
            except PodmanError as exc:
                if exc.status and "state improper" in str(exc):
                    return True
                log.warning("cannot ask whether pod %s runs: %r", podman_name, exc)
                if not exc.status:  # podman not answering
                    return None
        return False

    # -- containers ---------------------------------------------------------------------------

    def containers(self, pod_uid: str | None = None) -> list[Observed]:
        """This node's containers; with ``pod_uid``, only that pod's (a cheaper list, for one pod's worker)."""
        label = f"{UID_LABEL}={pod_uid}" if pod_uid else f"{NODE_LABEL}={self.node}"
        try:
            found = self.client.containers({"label": [label]})
        except PodmanError as exc:
            raise ContainerRuntimeError(f"cannot list containers: {exc}") from exc
        out = []
        for a in found:
            labels = a.get("Labels") or {}
            if CONTAINER_LABEL not in labels:
                continue
            out.append(Observed(
                id=a["Id"], name=(a.get("Names") or [""])[0], pod_uid=labels.get(UID_LABEL, ""),
                container=labels[CONTAINER_LABEL], attempt=int(labels.get(ATTEMPT_LABEL, "0")),
                spec_hash=labels.get(HASH_LABEL, ""), state=str(a.get("State", "")),
                exit_code=int(a.get("ExitCode") or 0), started_at=int(a.get("StartedAt") or 0),
                finished_at=int(a.get("ExitedAt") or 0) if a.get("Exited") else 0,
                image_id=str(a.get("ImageID", "")),
            ))
        return out

    def create_container(self, plan: PodPlan, container: ContainerPlan, attempt: int,
                         mounts: list[HostMount]) -> str:
        try:
            return self.client.create_container(container_json(self.container_spec(plan, container, attempt, mounts)))
        except PodmanError as exc:
            raise ContainerRuntimeError(f"cannot create container {container.name}: {exc}") from exc

    def container_spec(self, plan: PodPlan, container: ContainerPlan, attempt: int,
                       mounts: list[HostMount]) -> ContainerSpec:
        """What the container is made with: its identity, environment, mounts, limits and securityContext, the
        pod's host namespaces, dns and hosts. (Its CPU limit is not among them: see edge.podmanclient.specgen.)"""
        labels = {**plan.labels, CONTAINER_LABEL: container.name, ATTEMPT_LABEL: str(attempt),
                  HASH_LABEL: container.spec_hash, RESTARTS_ON_LABEL: restarts_on(plan.restart_policy, container.init)}
        env = dict(container.env)
        if "PATH" not in env and not self._image_sets_path(container.image):
            env["PATH"] = DEFAULT_PATH  # podman's API, unlike its CLI, adds none when env is given
        sec = container.security
        image_user = self.image_user(container.image)
        cap_add, cap_drop = podman_caps(sec, image_user)
        host = plan.host
        dns = host.custom_dns and plan.host_network  # a pod of its own network has them on the pod (create_pod)
        return ContainerSpec(
            image=container.image,
            name=container_name(plan.key.namespace or "-", plan.key.name, container.name, attempt),
            pod=plan.podman_name, labels=labels, env=env,
            mounts=[BindMount(m.source, m.target, m.read_only) for m in mounts],
            entrypoint=container.entrypoint, command=container.command,
            working_dir=container.working_dir or None, mem_limit=container.mem_limit or None,
            cpu_quota_us=cpu_quota_us(container.nano_cpus),
            # PID 1 is the host's init, or the infra container's catatonit, reaping for all
            init=not (host.host_pid or host.share_pid),
            privileged=sec.privileged, read_only=sec.read_only,
            read_write_tmpfs=False,  # Kubernetes adds no writable /tmp to a read-only root
            no_new_privileges=sec.no_new_privileges, stdin=container.stdin, tty=container.tty,
            user=podman_user(sec, image_user), groups=[str(g) for g in sec.groups],
            cap_add=cap_add, cap_drop=cap_drop,
            seccomp_profile_path=sec.seccomp or None, apparmor_profile=sec.apparmor or None,
            selinux_opts=[f"label={o}" for o in sec.selinux], sysctls=dict(sec.sysctls),
            pid_mode="host" if host.host_pid else None, ipc_mode="host" if host.host_ipc else None,
            dns_servers=list(host.dns_servers) if dns else [], dns_searches=list(host.dns_searches) if dns else [],
            dns_options=list(host.dns_options) if dns else [],
            # one address per name, the last one given
            extra_hosts=dict(host.hosts) if plan.host_network else {},
        )

    def image_user(self, image: str) -> str:
        """The image's ``User`` (empty: root), asked of podman once per image."""
        if image not in self._image_user:
            try:
                self._image_user[image] = str((self.client.image(image).get("Config") or {}).get("User") or "")
            except PodmanError as exc:
                raise ContainerRuntimeError(f"cannot read the user of image {image}: {exc}") from exc
        return self._image_user[image]

    def _image_sets_path(self, image: str) -> bool:
        if image not in self._image_path:
            try:
                env = (self.client.image(image).get("Config") or {}).get("Env") or []
            except PodmanError:
                env = []
            self._image_path[image] = any(str(e).startswith("PATH=") for e in env)
        return self._image_path[image]

    def start_container(self, container_id: str) -> None:
        try:
            self.client.start_container(container_id)
        except PodmanError as exc:
            raise ContainerRuntimeError(f"cannot start container {container_id[:12]}: {exc}") from exc

    def stop_container(self, container_id: str, grace_s: int) -> None:
        try:
            self.client.stop_container(container_id, max(0, grace_s))
        except NotFound:
            pass
        except PodmanError as exc:
            log.warning("stopping container %s: %s", container_id[:12], exc)

    def remove_container(self, container_id: str) -> None:
        try:
            self.client.remove_container(container_id, force=True)
        except NotFound:
            pass
        except PodmanError as exc:
            log.warning("removing container %s: %s", container_id[:12], exc)

    def exec(self, container_id: str, command: list[str]) -> tuple[int, bytes]:
        try:
            code, out, err = self.client.exec_run(container_id, command)
        except PodmanError as exc:
            raise ContainerRuntimeError(f"exec in {container_id[:12]} failed: {exc}") from exc
        return code, out + err

    def logs(self, container_id: str, lines: int) -> bytes:
        """The last ``lines`` lines of the container's output (stdout and stderr as they came)."""
        try:
            return self.client.logs(container_id, lines)
        except PodmanError as exc:
            raise ContainerRuntimeError(f"cannot read the log of {container_id[:12]}: {exc}") from exc


def _pod_dns_and_hosts(plan: PodPlan) -> dict[str, Any]:
    """The pod's resolver and /etc/hosts entries under podman's names for them on a pod (PodSpecGenerator)."""
    out: dict[str, Any] = {}
    if plan.host.custom_dns:
        out.update({"dns_server": list(plan.host.dns_servers), "dns_search": list(plan.host.dns_searches),
                    "dns_option": list(plan.host.dns_options)})
    if plan.host.hosts:
        out["hostadd"] = [f"{name}:{ip}" for name, ip in plan.host.hosts]
    return out
