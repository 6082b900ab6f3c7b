"""What EdgeD does to one container of a pod, and how it reads one: create it (once its image is there), restart it
after CrashLoopBackOff, probe it, run its hooks, kill it, read its termination message and make its view.

Apart from kubelet.py because these act on a single container, given its plan and its book (podworker.py), and
need nothing of the sync pass: not the desired pods, not the other workers, not the pass's locks. The pass
(kubelet.py) decides which containers to act on and when; this module says how.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from edge.edged import hooks
from edge.edged.events import EVERY_PASS_S, EventRecorder, go_duration
from edge.edged.handlers import run_handler
from edge.edged.handlerspec import Probe
from edge.edged.initcontainers import restarts
from edge.edged.podspec import ContainerPlan, PodPlan
from edge.edged.podworker import BACKOFF_RESET_AFTER_S, ContainerBook, restart_delay
from edge.edged.probes import ProbeState, run_due_probes
from edge.edged.pullsecrets import credentials
from edge.edged.runtime import ContainerRuntimeError, ImagePullError, Observed, PodmanRuntime
from edge.edged.security import non_root_violation
from edge.edged.status import ContainerView, terminated
from edge.edged.termination import TerminationLogs
from edge.edged.volumes import Volumes
from schemas.resource import ResourceKey

log = logging.getLogger(__name__)

MAX_NAME_ATTEMPTS = 20
"""How far container names may skip past names held by leftovers of interrupted creates."""


class ContainerActions:
    """``lookup`` finds a ConfigMap or Secret of the desired state (the pull secrets of an image pull)."""

    def __init__(self, runtime: PodmanRuntime, volumes: Volumes, host_ip: str,
                 lookup: Callable[[ResourceKey], dict[str, Any] | None], events: EventRecorder | None = None
                 ) -> None:
        self.runtime = runtime
        self.events = events or EventRecorder("")
        self.volumes = volumes
        self.termination = TerminationLogs(volumes.pod_dir)
        self.host_ip = host_ip
        self.lookup = lookup

    def view(self, plan: PodPlan, container: ContainerPlan, book: ContainerBook, current: Observed | None, *,
             initializing: bool = False, previous: Observed | None = None) -> ContainerView:
        """``initializing``: a container before this one has not succeeded yet (this one waits for it).
        ``previous``: the instance before ``current`` that podman keeps; the last state when EdgeD has none of
        its own (it restarted since), as the kubelet reads it from its dead containers."""
        if book.last_terminated is None and previous is not None:
            book.last_terminated = terminated(previous, previous.started_at,
                                              self.message(plan, container, book, previous))
        if (book.waiting_reason == "ContainerCreating" and current is not None and current.attempt >= book.creating
                and (current.running or current.finished)):
            book.waiting_reason = None  # it started (and may have ended before a pass saw it run)
        if initializing and current is None:
            return ContainerView(container.name, container.image, None, "PodInitializing", "", False, None)
        message = self.message(plan, container, book, current) if current is not None and current.finished else ""
        return ContainerView(container.name, container.image, current, book.waiting_reason, book.waiting_message,
                             book.probes.ready(container), book.last_terminated, message,
                             book.probes.started(container))

    def message(self, plan: PodPlan, container: ContainerPlan, book: ContainerBook, ended: Observed) -> str:
        """The termination message of an ended container, read once."""
        if book.message[0] != ended.id:
            def logs(lines: int) -> bytes:
                try:
                    return self.runtime.logs(ended.id, lines)
                except ContainerRuntimeError as exc:
                    log.warning("pod %s: %s", plan.key, exc)
                    return b""
            book.message = (ended.id, self.termination.message(plan.uid, container, ended.attempt, ended.exit_code,
                                                               logs))
        return book.message[1]

    def create(self, plan: PodPlan, container: ContainerPlan, book: ContainerBook, attempt: int) -> str | None:
        """Create a container (after the image is known to be there); None while it must wait."""
        now = time.time()
        if not self.image_ready(plan, container, book, now):
            return None
        violation = non_root_violation(container.security, self.runtime.image_user(container.image),
                                       f"{plan.key.name}_{plan.key.namespace}({plan.uid})", container.name
                                       ) if container.security.run_as_non_root else None
        if violation is not None:
            book.waiting_reason, book.waiting_message = "CreateContainerConfigError", violation
            self.events.container(plan, container, "Failed", f"Error: {violation}", warning=True,
                                  every_s=EVERY_PASS_S)
            return None
        if container.pod_ip_env:
            address = self.sandbox_address(plan)
            if not address:
                book.waiting_reason = "ContainerCreating"
                book.waiting_message = "waiting for the pod's address (env fieldRef status.podIP)"
                return None
            container = replace(container, env={**container.env, **dict.fromkeys(container.pod_ip_env, address)})
        try:
            container_id = self.runtime.create_container(
                plan, container, attempt,
                [*self.volumes.mounts(plan, container), self.termination.mount(plan.uid, container, attempt)])
        except ContainerRuntimeError as exc:
            if "already in use" in str(exc) and attempt < MAX_NAME_ATTEMPTS:
                # A create cut short (power, or podman killed) can leave the name taken in podman's storage by
                # a container its database never recorded: invisible, not removable through the API. The
                # next attempt number gives the container a name of its own.
                log.warning("pod %s: the name of container %s attempt %d is held by a leftover of an "
                            "interrupted create; using attempt %d", plan.key, container.name, attempt, attempt + 1)
                return self.create(plan, container, book, attempt + 1)
            if book.waiting_message != str(exc):  # said once, not at every pass
                log.warning("pod %s: cannot create container %s: %s", plan.key, container.name, exc)
            book.waiting_reason, book.waiting_message = "CreateContainerError", str(exc)
            self.events.container(plan, container, "Failed", f"Error: {exc}", warning=True, every_s=EVERY_PASS_S)
            return None
        book.waiting_reason, book.waiting_message = "ContainerCreating", ""
        book.creating = attempt
        book.probes = ProbeState()
        self.events.container(plan, container, "Created", f"Created container {container.name}")
        return container_id

    def image_ready(self, plan: PodPlan, container: ContainerPlan, book: ContainerBook, now: float) -> bool:
        present = self.runtime.image_present(container.image)
        image = container.image
        if container.pull_policy == "Never" or (present and container.pull_policy == "IfNotPresent"):
            if present:
                self.events.container(plan, container, "Pulled", f'Container image "{image}" already present on '
                                                                 "machine")
            else:
                book.waiting_reason = "ErrImageNeverPull"
                book.waiting_message = f'image "{image}" is not present and its pull policy is Never'
                self.events.container(plan, container, "ErrImageNeverPull", f'Container image "{image}" is not '
                                      "present with pull policy of Never", warning=True, every_s=EVERY_PASS_S)
                self.events.container(plan, container, "Failed", "Error: ErrImageNeverPull", warning=True,
                                      every_s=EVERY_PASS_S)
            return present
        found = credentials(image, plan.pull_secrets, self.lookup)
        if now < book.next_pull_at and found.fingerprint == book.pull_credentials:
            book.waiting_reason = "ImagePullBackOff"
            book.waiting_message = f'Back-off pulling image "{image}": {book.pull_error}'
            self.events.container(plan, container, "BackOff", f'Back-off pulling image "{image}"',
                                  every_s=EVERY_PASS_S)
            self.events.container(plan, container, "Failed", "Error: ImagePullBackOff", warning=True,
                                  every_s=EVERY_PASS_S)
            return False
        book.pull_credentials = found.fingerprint
        self.events.container(plan, container, "Pulling", f'Pulling image "{image}"')
        began = time.monotonic()
        try:
            if found.unreadable:  # kubelet does not pull with a pull secret it cannot read
                raise ImagePullError(f"cannot pull image {image!r} with the pod's imagePullSecrets")
            self.runtime.pull(image, [auth.auth_config() for auth in found.candidates])
        except ImagePullError as exc:
            book.pull_failures += 1
            book.next_pull_at = now + restart_delay(book.pull_failures + 1)
            book.pull_error = found.explain(str(exc))
            book.waiting_reason, book.waiting_message = "ErrImagePull", book.pull_error
            self.events.container(plan, container, "Failed", f'Failed to pull image "{image}": {book.pull_error}',
                                  warning=True)
            self.events.container(plan, container, "Failed", "Error: ErrImagePull", warning=True)
            return False
        book.pull_failures = 0
        self.events.container(plan, container, "Pulled", f'Successfully pulled image "{image}" in '
                                                         f"{go_duration(time.monotonic() - began)}")
        return True

    def maybe_restart(self, plan: PodPlan, container: ContainerPlan, book: ContainerBook, current: Observed,
                       now: float) -> str | None:
        if not restarts(container, plan.restart_policy, current.exit_code):
            book.waiting_reason = None
            return None
        attempt = current.attempt + 1
        ran_for = (current.finished_at or now) - current.started_at
        delay = 0.0 if ran_for >= BACKOFF_RESET_AFTER_S else restart_delay(attempt)
        due = (current.finished_at or now) + delay
        if now < due:
            self.events.container(plan, container, "BackOff", "Back-off restarting failed container", warning=True,
                                  every_s=EVERY_PASS_S)
            book.waiting_reason = "CrashLoopBackOff"
            book.waiting_message = (f"back-off {delay:.0f}s restarting failed container={container.name} "
                                    f"pod={plan.key.name}_{plan.key.namespace}({plan.uid})")
            book.last_terminated = terminated(current, time.time(), self.message(plan, container, book, current))
            return None
        book.last_terminated = terminated(current, time.time(), self.message(plan, container, book, current))
        new_id = self.create(plan, container, book, attempt)
        if new_id:  # ``current`` is kept, the previous instance (kubectl logs --previous); kubelet.py drops older ones
            log.info("pod %s: restarted container %s (restart %d, exit code %d)", plan.key, container.name,
                     attempt, current.exit_code)
        return new_id

    def probe(self, plan: PodPlan, container: ContainerPlan, book: ContainerBook, current: Observed,
               now: float) -> None:
        def run(probe: Probe) -> bool:
            outcome = run_handler(self.runtime, current.id, probe.handler, lambda: self.pod_address(plan),
                                  float(probe.timeout_s))
            if not outcome.ok:
                log.debug("pod %s: container %s: probe failed: %s", plan.key, container.name, outcome.message)
                self.events.container(plan, container, "Unhealthy",
                                      f"{probe_kind(container, probe).capitalize()} probe failed: {outcome.message}",
                                      warning=True)
            return outcome.ok

        failed = run_due_probes(book.probes, container, current.started_at, now, run)
        if failed is not None:
            kind, probe = failed
            log.info("pod %s: container %s failed its %s probe %d times; killing it", plan.key, container.name,
                     kind, probe.failure_threshold)
            self.kill(plan, container, current.id, probe.termination_grace_s or plan.grace_s,
                      f"Container {container.name} failed {kind} probe, will be restarted")

    def kill(self, plan: PodPlan, container: ContainerPlan, container_id: str, grace_s: int,
             why: str = "") -> None:
        """Stop a running container as kubelet kills one: its preStop hook first, within ``grace_s``. ``why``: the
        Killing event's message, when it is more than "Stopping container"."""
        self.events.container(plan, container, "Killing", why or f"Stopping container {container.name}")
        hooks.stop_container(self.runtime, container_id, container, grace_s, lambda: self.pod_address(plan))

    def post_start(self, plan: PodPlan, container: ContainerPlan, book: ContainerBook, container_id: str) -> None:
        """A container just started runs its postStart hook; if that fails it is killed (FailedPostStartHook)."""
        failure = hooks.post_start(self.runtime, container_id, container, lambda: self.pod_address(plan))
        if failure:
            log.warning("pod %s: %s; killing the container", plan.key, failure)
            self.events.container(plan, container, "FailedPostStartHook", failure, warning=True)
            self.kill(plan, container, container_id, plan.grace_s, "FailedPostStartHook")
            book.waiting_reason, book.waiting_message = "PostStartHookError", failure

    def sandbox_address(self, plan: PodPlan) -> str:
        """The pod's address, its sandbox (infra container) started first if it has none yet: podman assigns
        the address when the sandbox starts, and a container's env that names it is set when it is created.
        The pod's status reads the same address (pod_address)."""
        address = self.pod_address(plan)
        if not address:
            self.runtime.start_sandbox(plan.podman_name)
            address = self.pod_address(plan)
        return address

    def pod_address(self, plan: PodPlan) -> str:
        """Where the pod's containers listen: the node's own address for a pod on the host's network."""
        return self.host_ip if plan.host_network else self.runtime.pod_ip(plan.podman_name)


def probe_kind(container: ContainerPlan, probe: Probe) -> str:
    """Which of the container's probes ``probe`` is (startup, liveness, readiness), for an Unhealthy message."""
    return next((kind for kind in ("startup", "liveness", "readiness") if getattr(container, kind) is probe),
                "liveness")
