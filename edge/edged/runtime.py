"""The container runtime: podman's REST API through podman-py. The only module that imports podman.

Pods and containers carry ``io.edgehive.*`` labels (node, pod UID, container,
attempt, spec hash), so that what runs can be matched to what is desired after
any restart of EdgeD, with no state of its own.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

from podman import PodmanClient
from podman.errors import APIError, ImageNotFound, NotFound, PodmanError

from edge.edged.podspec import ContainerPlan, PodPlan, container_name
from edge.edged.security import podman_caps, podman_user
from edge.errors import EdgeError
from edge.podlabels import ATTEMPT_LABEL, CONTAINER_LABEL, HASH_LABEL, NODE_LABEL, RESTARTS_ON_LABEL, UID_LABEL
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
        self.client = PodmanClient(base_url=url)
        self._image_path: dict[str, bool] = {}
        self._image_user: dict[str, str] = {}

    def close(self) -> None:
        self.client.close()

    def ping(self) -> bool:
        try:
            return bool(self.client.ping())
        except (PodmanError, OSError):
            return False

    def version(self) -> str | None:
        """The runtime's version (``4.3.1``), None when it does not answer."""
        try:
            return str(self.client.version().get("Version") or "") or None
        except (PodmanError, OSError):
            return None

    # -- images -----------------------------------------------------------------------

    def image_present(self, image: str) -> bool:
        try:
            return bool(self.client.images.exists(image))
        except (PodmanError, OSError) as exc:
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
        kwargs: dict[str, Any] = {"auth_config": dict(auth)} if auth else {}
        try:
            # Streamed: podman answers 200 and says what went wrong (the registry's 401) in the stream's last line.
            progress = self.client.images.pull(image, stream=True, decode=True, **kwargs)
            for line in cast(Iterator[Any], progress):
                if isinstance(line, dict) and line.get("error"):
                    raise ImagePullError(f"failed to pull image {image!r}: {line['error']}")
        except (ImageNotFound, APIError, PodmanError, OSError) as exc:
            raise ImagePullError(f"failed to pull image {image!r}: {exc}") from exc
        if not self.image_present(image):  # podman-py does not always raise when the pull failed
            raise ImagePullError(f"failed to pull image {image!r}: no such image after the pull (is the registry "
                            "reachable from this node?)")

    # -- pods ----------------------------------------------------------------------------

    def pods(self) -> dict[str, str]:
        """Podman pod name -> pod UID, for the pods of this node."""
        try:
            found = self.client.pods.list(filters={"label": f"{NODE_LABEL}={self.node}"})
        except (PodmanError, OSError) as exc:
            raise ContainerRuntimeError(f"cannot list pods: {exc}") from exc
        return {p.name: (p.attrs.get("Labels") or {}).get(UID_LABEL, "") for p in found}

    def pod_uid(self, podman_name: str) -> str | None:
        """The pod UID of the podman pod ``podman_name`` (None: there is none): one pod inspected, where a list
        of every pod waits on every container podman is busy with."""
        try:
            pod = self.client.pods.get(podman_name)
        except NotFound:
            return None
        except (APIError, PodmanError, OSError) as exc:
            raise ContainerRuntimeError(f"cannot inspect pod {podman_name}: {exc}") from exc
        return str((pod.attrs.get("Labels") or {}).get(UID_LABEL, ""))

    def create_pod(self, plan: PodPlan) -> None:
        spec: dict[str, Any] = {"labels": plan.labels}
        if plan.ports:
            spec["portmappings"] = plan.ports
        if plan.host_network:  # and the host's UTS namespace, as on a cluster: the pod's hostname is the node's
            spec["netns"] = spec["utsns"] = {"nsmode": "host"}
        else:  # a pod on the host's network takes dns and hosts per container: podman ignores them on such a pod
            spec["hostname"] = plan.host.hostname or plan.key.name
            spec.update(_dns_and_hosts(plan, "dns_server", "dns_option", "hostadd"))
        if plan.host.share_pid:
            spec["shared_namespaces"] = ["uts", "ipc", "net", "pid"]  # podman's default set, and pid
        try:
            self.client.pods.create(plan.podman_name, **spec)
        except (APIError, PodmanError, OSError) as exc:
            raise ContainerRuntimeError(f"cannot create pod {plan.podman_name}: {exc}") from exc

    def start_pod(self, podman_name: str) -> None:
        try:
            self.client.pods.get(podman_name).start()
        except (APIError, PodmanError, OSError) as exc:
            raise ContainerRuntimeError(f"cannot start pod {podman_name}: {exc}") from exc

    def start_sandbox(self, podman_name: str) -> None:
        """Start the pod's infra container alone: the pod gets its address before its containers are made."""
        try:
            pod = self.client.pods.get(podman_name)
            self.client.containers.get(pod.attrs["InfraContainerID"]).start()
        except (KeyError, APIError, PodmanError, OSError) as exc:
            raise ContainerRuntimeError(f"cannot start the sandbox of pod {podman_name}: {exc}") from exc

    def remove_pod(self, podman_name: str, grace_s: int) -> None:
        """Stop every container with ``grace_s`` for SIGTERM to work, then remove the pod.

        The containers are stopped one by one (at once, each in a thread) before the pod: podman answers a
        stop of a pod some of whose containers have exited (an init container, a finished one: "Degraded")
        with 304 and stops nothing, and its forced removal then gives each container podman's own 10 s."""
        try:
            pod = self.client.pods.get(podman_name)
        except NotFound:
            return
        infra = pod.attrs.get("InfraContainerID")
        stops = [threading.Thread(target=self.stop_container, args=(c["Id"], grace_s), daemon=True)
                 for c in pod.attrs.get("Containers") or [] if c.get("State") == "running" and c.get("Id") != infra]
        for stop in stops:
            stop.start()
        for stop in stops:
            stop.join()
        try:
            pod.stop(timeout=max(0, grace_s))
        except (APIError, PodmanError, OSError) as exc:
            log.warning("stopping pod %s: %s", podman_name, exc)
        try:
            pod.remove(force=True)
        except NotFound:
            pass
        except (APIError, PodmanError, OSError) as exc:
            raise ContainerRuntimeError(f"cannot remove pod {podman_name}: {exc}") from exc

    def pod_ip(self, podman_name: str) -> str:
        try:
            pod = self.client.pods.get(podman_name)
            infra = self.client.containers.get(pod.attrs["InfraContainerID"])
        except (NotFound, KeyError, APIError, PodmanError, OSError):
            return ""
        settings = infra.attrs.get("NetworkSettings") or {}
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
            pod = self.client.pods.get(podman_name)
            infra = self.client.containers.get(pod.attrs["InfraContainerID"])
        except NotFound:
            return False
        except (KeyError, APIError, PodmanError, OSError) as exc:
            raise ContainerRuntimeError(f"cannot inspect pod {podman_name}: {exc}") from exc
        return bool(infra.status == "running")

    def sandbox_lost(self, podman_name: str) -> bool:
        """Whether podman says a container of the pod runs (its infra container or any other) while its process
        is gone.

        podman learns that a container ended from its conmon; when conmon was SIGKILLed with it (a power cut
        that leaves /run, the OOM killer), podman says "running" for ever, and a pod start then fails on its
        dead sandbox. A signal that changes nothing (SIGCONT) goes to the OCI runtime itself, which refuses it
        for a container whose process is gone ("container state improper"). Every container podman calls
        running is asked, not only the infra container: the conmons do not all die at the same instant, and
        one that outlived its container by a moment recorded the end (the infra container then shows Exited)
        while the others, whose conmons died first, show running for ever; EdgeD reported such a pod Running."""
        try:
            pod = self.client.pods.get(podman_name)
        except NotFound:
            return False
        except (APIError, PodmanError, OSError) as exc:  # not this check's: the pod's own sync deals with it
            log.warning("cannot ask whether pod %s runs: %r", podman_name, exc)
            return False
        for container in pod.attrs.get("Containers") or []:
            if container.get("State") != "running":
                continue
            try:
                self.client.containers.get(container.get("Id", "")).kill("SIGCONT")
            except NotFound:
                continue
            except APIError as exc:
                if "state improper" in str(exc):
                    return True
                log.warning("cannot ask whether pod %s runs: %s", podman_name, exc)
            except (PodmanError, OSError) as exc:
                log.warning("cannot ask whether pod %s runs: %r", podman_name, exc)
        return False

    # -- containers ---------------------------------------------------------------------------

    def containers(self, pod_uid: str | None = None) -> list[Observed]:
        """This node's containers; with ``pod_uid``, only that pod's (a cheaper list, for one pod's worker)."""
        label = f"{UID_LABEL}={pod_uid}" if pod_uid else f"{NODE_LABEL}={self.node}"
        try:
            found = self.client.containers.list(all=True, filters={"label": label})
        except (PodmanError, OSError) as exc:
            raise ContainerRuntimeError(f"cannot list containers: {exc}") from exc
        out = []
        for c in found:
            a = c.attrs
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
        labels = {**plan.labels, CONTAINER_LABEL: container.name, ATTEMPT_LABEL: str(attempt),
                  HASH_LABEL: container.spec_hash, RESTARTS_ON_LABEL: restarts_on(plan.restart_policy, container.init)}
        env = dict(container.env)
        if "PATH" not in env and not self._image_sets_path(container.image):
            env["PATH"] = DEFAULT_PATH  # podman's API, unlike its CLI, adds none when env is given
        kwargs: dict[str, Any] = {
            "name": container_name(plan.key.namespace or "-", plan.key.name, container.name, attempt),
            "pod": plan.podman_name, "init": True, "labels": labels, "environment": env,
            "mounts": [_mount(m) for m in mounts],
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
            kwargs["nano_cpus"] = container.nano_cpus
        kwargs.update(self._security_options(plan, container))
        try:
            created = self.client.containers.create(container.image, **kwargs)
        except (APIError, PodmanError, OSError) as exc:
            raise ContainerRuntimeError(f"cannot create container {container.name}: {exc}") from exc
        return str(created.id)

    def _security_options(self, plan: PodPlan, container: ContainerPlan) -> dict[str, Any]:
        """podman's options for the container's securityContext, the pod's host namespaces, dns and hosts."""
        sec = container.security
        image_user = self.image_user(container.image)
        out: dict[str, Any] = {"privileged": sec.privileged, "read_only": sec.read_only,
                               "read_write_tmpfs": False,  # Kubernetes adds no writable /tmp to a read-only root
                               "no_new_privileges": sec.no_new_privileges, "stdin_open": container.stdin,
                               "tty": container.tty}
        user = podman_user(sec, image_user)
        if user is not None:
            out["user"] = user
        if sec.groups:
            out["group_add"] = [str(g) for g in sec.groups]
        cap_add, cap_drop = podman_caps(sec, image_user)
        if cap_add:
            out["cap_add"] = cap_add
        if cap_drop:
            out["cap_drop"] = cap_drop
        if sec.seccomp:
            out["seccomp_profile_path"] = sec.seccomp
        if sec.apparmor:
            out["apparmor_profile"] = sec.apparmor
        if sec.selinux:
            out["security_opt"] = [f"label={o}" for o in sec.selinux]
        if sec.sysctls:
            out["sysctls"] = dict(sec.sysctls)
        if plan.host.host_pid:
            out["pid_mode"] = "host"
        if plan.host.host_pid or plan.host.share_pid:
            out["init"] = False  # PID 1 is the host's init, or the infra container's catatonit, reaping for all
        if plan.host.host_ipc:
            out["ipc_mode"] = "host"
        if plan.host_network:
            out.update(_dns_and_hosts(plan, "dns", "dns_opt", "extra_hosts"))
        return out

    def image_user(self, image: str) -> str:
        """The image's ``User`` (empty: root), asked of podman once per image."""
        if image not in self._image_user:
            try:
                self._image_user[image] = str((self.client.images.get(image).attrs.get("Config") or {})
                                              .get("User") or "")
            except (NotFound, APIError, PodmanError, OSError) as exc:
                raise ContainerRuntimeError(f"cannot read the user of image {image}: {exc}") from exc
        return self._image_user[image]

    def _image_sets_path(self, image: str) -> bool:
        if image not in self._image_path:
            try:
                env = (self.client.images.get(image).attrs.get("Config") or {}).get("Env") or []
            except (NotFound, APIError, PodmanError, OSError):
                env = []
            self._image_path[image] = any(str(e).startswith("PATH=") for e in env)
        return self._image_path[image]

    def start_container(self, container_id: str) -> None:
        try:
            self.client.containers.get(container_id).start()
        except (APIError, PodmanError, OSError) as exc:
            raise ContainerRuntimeError(f"cannot start container {container_id[:12]}: {exc}") from exc

    def stop_container(self, container_id: str, grace_s: int) -> None:
        try:
            self.client.containers.get(container_id).stop(timeout=max(0, grace_s))
        except NotFound:
            pass
        except (APIError, PodmanError, OSError) as exc:
            log.warning("stopping container %s: %s", container_id[:12], exc)

    def remove_container(self, container_id: str) -> None:
        try:
            self.client.containers.get(container_id).remove(force=True)
        except NotFound:
            pass
        except (APIError, PodmanError, OSError) as exc:
            log.warning("removing container %s: %s", container_id[:12], exc)

    def exec(self, container_id: str, command: list[str]) -> tuple[int, bytes]:
        try:
            code, output = self.client.containers.get(container_id).exec_run(command, demux=True)
        except (APIError, PodmanError, OSError) as exc:
            raise ContainerRuntimeError(f"exec in {container_id[:12]} failed: {exc}") from exc
        out, err = output if isinstance(output, tuple) else (output, b"")
        return int(code or 0), (out or b"") + (err or b"")

    def logs(self, container_id: str, lines: int) -> bytes:
        """The last ``lines`` lines of the container's output (stdout and stderr as they came)."""
        try:
            frames = self.client.containers.get(container_id).logs(stdout=True, stderr=True, tail=lines)
        except (APIError, PodmanError, OSError) as exc:
            raise ContainerRuntimeError(f"cannot read the log of {container_id[:12]}: {exc}") from exc
        return frames if isinstance(frames, bytes) else b"".join(frames)


def _dns_and_hosts(plan: PodPlan, servers: str, options: str, hosts: str) -> dict[str, Any]:
    """The pod's resolver and /etc/hosts entries under podman's names for them (the pod's or a container's)."""
    out: dict[str, Any] = {}
    if plan.host.custom_dns:
        out.update({servers: list(plan.host.dns_servers), "dns_search": list(plan.host.dns_searches),
                    options: list(plan.host.dns_options)})
    if plan.host.hosts:
        if hosts == "extra_hosts":  # podman-py's container option is a map, so one address per name
            out[hosts] = dict(plan.host.hosts)
        else:
            out[hosts] = [f"{name}:{ip}" for name, ip in plan.host.hosts]
    return out


def _mount(m: HostMount) -> dict[str, Any]:
    return {"type": "bind", "source": m.source, "target": m.target, "read_only": m.read_only}
