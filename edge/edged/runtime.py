"""The container runtime: podman's REST API through podman-py. The only module that imports podman.

Pods and containers carry ``io.edgehive.*`` labels (node, pod UID, container,
attempt, spec hash), so that what runs can be matched to what is desired after
any restart of EdgeD, with no state of its own.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

from podman import PodmanClient
from podman.errors import APIError, ImageNotFound, NotFound, PodmanError

from edge.edged.podspec import (
    ATTEMPT_LABEL,
    CONTAINER_LABEL,
    HASH_LABEL,
    NODE_LABEL,
    UID_LABEL,
    ContainerPlan,
    PodPlan,
    container_name,
)
from edge.errors import EdgeError

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
    tmpfs: bool = False


class PodmanRuntime:
    def __init__(self, url: str, node: str) -> None:
        self.url = url
        self.node = node
        self.client = PodmanClient(base_url=url)
        self._image_path: dict[str, bool] = {}

    def close(self) -> None:
        self.client.close()

    def ping(self) -> bool:
        try:
            return bool(self.client.ping())
        except (PodmanError, OSError):
            return False

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

    def create_pod(self, plan: PodPlan) -> None:
        spec: dict[str, Any] = {"labels": plan.labels, "hostname": plan.key.name}
        if plan.ports:
            spec["portmappings"] = plan.ports
        if plan.host_network:
            spec["netns"] = {"nsmode": "host"}
        try:
            self.client.pods.create(plan.podman_name, **spec)
        except (APIError, PodmanError, OSError) as exc:
            raise ContainerRuntimeError(f"cannot create pod {plan.podman_name}: {exc}") from exc

    def start_pod(self, podman_name: str) -> None:
        try:
            self.client.pods.get(podman_name).start()
        except (APIError, PodmanError, OSError) as exc:
            raise ContainerRuntimeError(f"cannot start pod {podman_name}: {exc}") from exc

    def remove_pod(self, podman_name: str, grace_s: int) -> None:
        """Stop every container with ``grace_s`` for SIGTERM to work, then remove the pod."""
        try:
            pod = self.client.pods.get(podman_name)
        except NotFound:
            return
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

    # -- containers ---------------------------------------------------------------------------

    def containers(self) -> list[Observed]:
        try:
            found = self.client.containers.list(all=True, filters={"label": f"{NODE_LABEL}={self.node}"})
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
                  HASH_LABEL: container.spec_hash}
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
        try:
            created = self.client.containers.create(container.image, **kwargs)
        except (APIError, PodmanError, OSError) as exc:
            raise ContainerRuntimeError(f"cannot create container {container.name}: {exc}") from exc
        return str(created.id)

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


def _mount(m: HostMount) -> dict[str, Any]:
    if m.tmpfs:
        return {"type": "tmpfs", "source": "tmpfs", "target": m.target}
    return {"type": "bind", "source": m.source, "target": m.target, "read_only": m.read_only}
