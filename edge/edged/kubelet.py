"""EdgeD's core: make what runs in podman match the pods this node should run, and say how they are.

A sync pass lists this node's containers once, then lets each pod's worker act on
its own pod in a thread pool (so one slow image or a long graceful stop holds up
no other pod): create the podman pod and containers, restart what exited as the
restart policy says with CrashLoopBackOff delays, run probes, stop what is
deleted, and remove what no pod claims. A pass runs when a pod or its
ConfigMaps/Secrets change and every second; status goes upstream only when it
changes.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge.edged.node import host_ip as node_host_ip
from edge.edged.podspec import ConfigError, ContainerPlan, PodPlan, PodSpecError, plan_pod
from edge.edged.probes import ProbeState, run_due_probes, run_probe
from edge.edged.projection import NodeSide, node_allocatable
from edge.edged.pullsecrets import credentials
from edge.edged.runtime import ContainerRuntimeError, ImagePullError, Observed, PodmanRuntime
from edge.edged.status import ContainerView, deleted_status, failed_status, pod_status, terminated
from edge.edged.tokens import TokenKeeper
from edge.edged.volumes import Volumes
from schemas.kinds import PV
from schemas.kubeobj import ObjectMeta, meta
from schemas.podrefs import config_refs
from schemas.resource import ResourceKey
from schemas.timefmt import rfc3339

log = logging.getLogger(__name__)

BACKOFF_START_S = 10.0
BACKOFF_MAX_S = 300.0
BACKOFF_RESET_AFTER_S = 600.0
SYNC_PERIOD_S = 1.0
MIN_PASS_INTERVAL_S = 0.1

StatusSink = Callable[[ResourceKey, ObjectMeta, dict[str, Any]], None]
"""Receives (pod key, pod metadata, status) whenever a pod's status changes."""


MAX_NAME_ATTEMPTS = 20
"""How far container names may skip past names held by leftovers of interrupted creates."""


def restart_delay(attempt: int) -> float:
    """Before starting attempt ``attempt`` (1 = first restart): none, then 10 s doubling to 300 s."""
    if attempt <= 1:
        return 0.0
    return float(min(BACKOFF_MAX_S, BACKOFF_START_S * 2 ** (attempt - 2)))


@dataclass
class _ContainerBook:
    waiting_reason: str | None = None
    waiting_message: str = ""
    next_start_at: float = 0.0
    pull_failures: int = 0
    next_pull_at: float = 0.0
    pull_credentials: tuple[Any, ...] = ()  # what the last pull had (a change ends its back-off)
    pull_error: str = ""
    probes: ProbeState = field(default_factory=ProbeState)
    last_terminated: dict[str, Any] | None = None


@dataclass
class PodWorker:
    """Everything EdgeD remembers about one pod between passes; rebuilt from podman after a restart."""

    key: ResourceKey
    uid: str
    started: float = field(default_factory=time.time)
    books: dict[str, _ContainerBook] = field(default_factory=dict)
    pod_started: bool = False
    terminated: bool = False
    last_status: dict[str, Any] | None = None
    plan: PodPlan | None = None
    plan_signature: tuple[str, int, int] | None = None
    busy: Future[None] | None = None
    remake: bool = False
    """The podman pod is there but takes no container (half made when power or EdgeD died): make it again."""

    def book(self, name: str) -> _ContainerBook:
        return self.books.setdefault(name, _ContainerBook())


class Kubelet:
    def __init__(self, node: str, runtime: PodmanRuntime, volumes: Volumes, report: StatusSink,
                 *, host_ip: str = "", workers: int = 8, tokens: TokenKeeper | None = None,
                 downward_allocatable: Mapping[str, float] | None = None) -> None:
        self.node = node
        self.runtime = runtime
        self.volumes = volumes
        self.report = report
        self.host_ip = host_ip or node_host_ip()
        self.tokens = tokens
        # What a missing limit reads as in the downward API (projection.py), and where tokens come from.
        self.node_side = NodeSide(self.host_ip, node_allocatable(Path("/")) if downward_allocatable is None
                                  else downward_allocatable, tokens.token if tokens else None)
        self._lock = threading.Lock()
        self._pods: dict[ResourceKey, dict[str, Any]] = {}
        self._config: dict[ResourceKey, dict[str, Any]] = {}
        self._workers: dict[str, PodWorker] = {}  # by pod UID
        self._deleted_grace: dict[str, int] = {}
        self._pod_refs: dict[ResourceKey, frozenset[ResourceKey]] = {}
        self._used: set[ResourceKey] = set()
        self._config_version: dict[ResourceKey, int] = {}
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="pod-worker")
        self._kick = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="kubelet-sync", daemon=True)
        self.ready = threading.Event()  # set once the desired state has been loaded

    # -- desired state -------------------------------------------------------------

    def set_pod(self, key: ResourceKey, pod: dict[str, Any] | None) -> None:
        with self._lock:
            if pod is None:
                old = self._pods.pop(key, None)
                if old is not None:  # deleted outright: still stop it as gently as its spec asks
                    uid = meta(old).uid or ""
                    grace = (old.get("spec") or {}).get("terminationGracePeriodSeconds", 30)
                    self._deleted_grace[uid] = int(grace) if isinstance(grace, int) else 30
            else:
                self._pods[key] = pod
            self._index_refs()
        self._kick.set()

    def _index_refs(self) -> None:
        """Which ConfigMaps and Secrets the desired pods use (kept, not recomputed per config event)."""
        self._pod_refs = {k: config_refs(p) for k, p in self._pods.items()}
        self._used = set().union(*self._pod_refs.values()) if self._pod_refs else set()

    def set_config(self, key: ResourceKey, obj: dict[str, Any] | None) -> None:
        """A ConfigMap or Secret changed: the pods that use it sync again (files are rewritten)."""
        with self._lock:
            if obj is None:
                self._config.pop(key, None)
            else:
                self._config[key] = obj
            self._config_version[key] = self._config_version.get(key, 0) + 1
            used = key in self._used or key.kind == PV  # a PersistentVolume is used through its claim
        if used:
            self._kick.set()

    def replace_all(self, pods: dict[ResourceKey, dict[str, Any]], config: dict[ResourceKey, dict[str, Any]]) -> None:
        with self._lock:
            self._pods = dict(pods)
            self._config = dict(config)
            for key in config:
                self._config_version[key] = self._config_version.get(key, 0) + 1
            self._index_refs()
        self.ready.set()
        self._kick.set()

    def report_again(self) -> None:
        """Send every pod's status again on the next pass, changed or not."""
        for worker in list(self._workers.values()):
            worker.last_status = None
        self._kick.set()

    def _signature(self, worker: PodWorker, pod: dict[str, Any]) -> tuple[str, int, int]:
        """Changes when the pod or any ConfigMap/Secret it uses changes, or a service account token of it is to
        be written or renewed (tokens.py): until then its plan stands."""
        token_stamp = self.tokens.stamp(worker.uid) if self.tokens is not None else 0
        with self._lock:
            refs = self._pod_refs.get(worker.key, frozenset())
            return (str(meta(pod).resource_version),
                    sum(self._config_version.get(k, 0) for k in refs), token_stamp)

    def _lookup(self, key: ResourceKey) -> dict[str, Any] | None:
        with self._lock:
            return self._config.get(key)

    # -- the loop -----------------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop managing; running pods are left running (they outlive EdgeD, as with a kubelet)."""
        self._stop.set()
        self._kick.set()
        self._thread.join(timeout=10)
        self._pool.shutdown(wait=True, cancel_futures=True)

    def _loop(self) -> None:
        last = 0.0
        while not self._stop.is_set():
            self._kick.wait(SYNC_PERIOD_S)
            # A burst of changes (a thousand ConfigMaps) makes one pass per MIN_PASS_INTERVAL_S, not one each:
            # every pass lists podman's containers and pods.
            self._stop.wait(max(0.0, last + MIN_PASS_INTERVAL_S - time.monotonic()))
            self._kick.clear()
            last = time.monotonic()
            if self._stop.is_set() or not self.ready.is_set():
                continue
            try:
                self.sync_once()
            except ContainerRuntimeError as exc:
                log.warning("sync pass failed: %s", exc)
            except Exception:
                log.exception("sync pass failed")

    def sync_once(self) -> None:
        observed = self.runtime.containers()
        podman_pods = self.runtime.pods()
        by_uid: dict[str, list[Observed]] = {}
        for o in observed:
            by_uid.setdefault(o.pod_uid, []).append(o)
        with self._lock:
            desired = dict(self._pods)
        wanted_uids: set[str] = set()
        for key, pod in desired.items():
            uid = meta(pod).uid or ""
            wanted_uids.add(uid)
            worker = self._workers.get(uid)
            if worker is None:
                worker = self._workers[uid] = PodWorker(key, uid)
            if worker.busy is None or worker.busy.done():
                worker.busy = self._pool.submit(self._sync_pod_safely, worker, pod, by_uid.get(uid, []),
                                                podman_pods)
        self._remove_orphans(wanted_uids, by_uid, podman_pods)

    def _remove_orphans(self, wanted: set[str], by_uid: dict[str, list[Observed]], podman_pods: dict[str, str]) -> None:
        for name, uid in podman_pods.items():
            if uid in wanted:
                continue
            worker = self._workers.get(uid)
            if worker is not None and worker.busy is not None and not worker.busy.done():
                continue
            log.info("removing pod %s (uid %s): no longer assigned to this node", name, uid)
            self._workers[uid] = worker = worker or PodWorker(_orphan_key(name), uid)
            worker.busy = self._pool.submit(self._remove_pod, name, uid, self._deleted_grace.pop(uid, 0))
        for uid in list(self._workers):
            if uid not in wanted and uid not in by_uid:
                worker = self._workers[uid]
                if worker.busy is None or worker.busy.done():
                    del self._workers[uid]
                    if self.tokens is not None:
                        self.tokens.forget(uid)
        for uid in self.volumes.known_uids() - wanted - set(by_uid):
            self.volumes.remove(uid)

    def _remove_pod(self, podman_name: str, uid: str, grace: int) -> None:
        try:
            self.runtime.remove_pod(podman_name, grace)
            self.volumes.remove(uid)
        except ContainerRuntimeError as exc:
            log.warning("could not remove pod %s: %s", podman_name, exc)

    def _sync_pod_safely(self, worker: PodWorker, pod: dict[str, Any], observed: list[Observed],
                         podman_pods: dict[str, str]) -> None:
        try:
            status = self.sync_pod(worker, pod, observed, podman_pods)
        except ContainerRuntimeError as exc:
            log.warning("pod %s: %s", worker.key, exc)
            return
        except Exception:
            log.exception("pod %s: sync failed", worker.key)
            return
        if status is not None and status != worker.last_status:
            worker.last_status = status
            self.report(worker.key, meta(pod), status)

    # -- one pod -------------------------------------------------------------------------

    def sync_pod(self, worker: PodWorker, pod: dict[str, Any], observed: list[Observed],
                 podman_pods: dict[str, str]) -> dict[str, Any] | None:
        start_time = rfc3339(worker.started)
        signature = self._signature(worker, pod)
        try:
            if worker.plan is not None and worker.plan_signature == signature:
                plan, fresh = worker.plan, False
            else:
                plan, fresh = plan_pod(pod, self.node, self._lookup, side=self.node_side), True
        except ConfigError as exc:
            if meta(pod).deletion_timestamp:  # what it mounted may be gone first (kubectl delete namespace)
                return self._terminate_unplanned(worker, pod, start_time)
            return self._waiting_on_config(worker, pod, exc, start_time)
        except PodSpecError as exc:
            return failed_status(exc.reason, exc.message, self.host_ip, start_time)
        except (KeyError, TypeError, ValueError) as exc:
            return failed_status("InvalidSpec", f"the pod spec is malformed: {exc}", self.host_ip, start_time)

        if meta(pod).deletion_timestamp:
            return self._terminate(worker, plan, start_time)

        if fresh:  # planning again means something changed: files are written again
            self.volumes.prepare(plan)
            worker.plan, worker.plan_signature = plan, signature
        if podman_pods.get(plan.podman_name) != plan.uid or worker.remake:
            if plan.podman_name in podman_pods:  # an older pod of the same name, or a broken one: replaced
                self.runtime.remove_pod(plan.podman_name, plan.grace_s)
            self.runtime.create_pod(plan)
            worker.pod_started = worker.remake = False
            observed = []
        latest: dict[str, Observed] = {}
        for o in observed:
            if o.container not in latest or o.attempt > latest[o.container].attempt:
                latest[o.container] = o
        created: list[str] = []
        now = time.time()
        for container in plan.containers:
            book = worker.book(container.name)
            current = latest.get(container.name)
            if current is not None and current.spec_hash != container.spec_hash:
                log.info("pod %s: container %s changed; replacing it", plan.key, container.name)
                self.runtime.stop_container(current.id, plan.grace_s)
                self.runtime.remove_container(current.id)
                new_id = self._create(plan, container, book, current.attempt + 1)
                if new_id:
                    created.append(new_id)
                continue
            if current is None:
                new_id = self._create(plan, container, book, 0)
                if new_id:
                    created.append(new_id)
                elif book.waiting_reason == "CreateContainerError" and not observed:
                    worker.remake = True  # nothing of ours runs in that pod: nothing is lost by making it again
            elif current.running:
                book.waiting_reason = None
                self._probe(plan, container, book, current, now)
            elif current.finished:
                new_id = self._maybe_restart(plan, container, book, current, now)
                if new_id:
                    created.append(new_id)
            elif current.state in ("created", "configured", "initialized"):
                created.append(current.id)
        if created:
            if not worker.pod_started:
                self.runtime.start_pod(plan.podman_name)
                worker.pod_started = True
            else:
                for container_id in created:
                    self.runtime.start_container(container_id)
            self._kick.set()  # the next pass sees them running and reports it, without another list here
        elif observed:
            worker.pod_started = True
        views = []
        for container in plan.containers:
            book = worker.book(container.name)
            current = latest.get(container.name)
            if current is not None and current.running and book.waiting_reason == "ContainerCreating":
                book.waiting_reason = None
            ready = book.probes.ready if container.readiness is not None else True
            views.append(ContainerView(container.name, container.image, current, book.waiting_reason,
                                       book.waiting_message, ready, book.last_terminated))
        return pod_status(plan.restart_policy, views, pod_ip=self._pod_address(plan), host_ip=self.host_ip,
                          start_time=start_time, since=start_time)

    def _waiting_on_config(self, worker: PodWorker, pod: dict[str, Any], exc: ConfigError,
                           start_time: str) -> dict[str, Any]:
        containers = (pod.get("spec") or {}).get("containers") or []
        views = [ContainerView(str(c.get("name")), str(c.get("image", "")), None, exc.reason, exc.message, False,
                               None) for c in containers]
        return pod_status((pod.get("spec") or {}).get("restartPolicy", "Always"), views, pod_ip="",
                          host_ip=self.host_ip, start_time=start_time, since=start_time)

    def _create(self, plan: PodPlan, container: ContainerPlan, book: _ContainerBook, attempt: int) -> str | None:
        """Create a container (after the image is known to be there); None while it must wait."""
        now = time.time()
        if not self._image_ready(plan, container, book, now):
            return None
        try:
            container_id = self.runtime.create_container(plan, container, attempt,
                                                         self.volumes.mounts(plan, container))
        except ContainerRuntimeError as exc:
            if "already in use" in str(exc) and attempt < MAX_NAME_ATTEMPTS:
                # A create cut short (power, or podman killed) can leave the name taken in podman's storage by
                # a container its database never recorded: invisible, not removable through the API. The
                # next attempt number gives the container a name of its own.
                log.warning("pod %s: the name of container %s attempt %d is held by a leftover of an "
                            "interrupted create; using attempt %d", plan.key, container.name, attempt, attempt + 1)
                return self._create(plan, container, book, attempt + 1)
            if book.waiting_message != str(exc):  # said once, not at every pass
                log.warning("pod %s: cannot create container %s: %s", plan.key, container.name, exc)
            book.waiting_reason, book.waiting_message = "CreateContainerError", str(exc)
            return None
        book.waiting_reason, book.waiting_message = "ContainerCreating", ""
        book.probes = ProbeState()
        return container_id

    def _image_ready(self, plan: PodPlan, container: ContainerPlan, book: _ContainerBook, now: float) -> bool:
        present = self.runtime.image_present(container.image)
        if container.pull_policy == "Never":
            if not present:
                book.waiting_reason = "ErrImageNeverPull"
                book.waiting_message = f'image "{container.image}" is not present and its pull policy is Never'
            return present
        if present and container.pull_policy == "IfNotPresent":
            return True
        found = credentials(container.image, plan.pull_secrets, self._lookup)
        if now < book.next_pull_at and found.fingerprint == book.pull_credentials:
            book.waiting_reason = "ImagePullBackOff"
            book.waiting_message = f'Back-off pulling image "{container.image}": {book.pull_error}'
            return False
        book.pull_credentials = found.fingerprint
        try:
            if found.unreadable:  # kubelet does not pull with a pull secret it cannot read
                raise ImagePullError(f"cannot pull image {container.image!r} with the pod's imagePullSecrets")
            self.runtime.pull(container.image, [auth.auth_config() for auth in found.candidates])
        except ImagePullError as exc:
            book.pull_failures += 1
            book.next_pull_at = now + restart_delay(book.pull_failures + 1)
            book.pull_error = found.explain(str(exc))
            book.waiting_reason, book.waiting_message = "ErrImagePull", book.pull_error
            return False
        book.pull_failures = 0
        return True

    def _maybe_restart(self, plan: PodPlan, container: ContainerPlan, book: _ContainerBook, current: Observed,
                       now: float) -> str | None:
        restart = plan.restart_policy == "Always" or (plan.restart_policy == "OnFailure" and current.exit_code != 0)
        if not restart:
            book.waiting_reason = None
            return None
        attempt = current.attempt + 1
        ran_for = (current.finished_at or now) - current.started_at
        delay = 0.0 if ran_for >= BACKOFF_RESET_AFTER_S else restart_delay(attempt)
        due = (current.finished_at or now) + delay
        if now < due:
            book.waiting_reason = "CrashLoopBackOff"
            book.waiting_message = (f"back-off {delay:.0f}s restarting failed container={container.name} "
                                    f"pod={plan.key.name}_{plan.key.namespace}({plan.uid})")
            book.last_terminated = terminated(current, time.time())
            return None
        book.last_terminated = terminated(current, time.time())
        new_id = self._create(plan, container, book, attempt)
        if new_id:
            self.runtime.remove_container(current.id)
            log.info("pod %s: restarted container %s (restart %d, exit code %d)", plan.key, container.name,
                     attempt, current.exit_code)
        return new_id

    def _probe(self, plan: PodPlan, container: ContainerPlan, book: _ContainerBook, current: Observed,
               now: float) -> None:
        def run(probe: dict[str, Any]) -> bool:
            return run_probe(self.runtime, current.id, probe, lambda: self._pod_address(plan))

        failures = run_due_probes(book.probes, container, current.started_at, now, run)
        if failures:
            log.info("pod %s: container %s failed its liveness probe %d times; restarting it", plan.key,
                     container.name, failures)
            self.runtime.stop_container(current.id, plan.grace_s)

    def _pod_address(self, plan: PodPlan) -> str:
        """Where the pod's containers listen: the node's own address for a pod on the host's network."""
        return self.host_ip if plan.host_network else self.runtime.pod_ip(plan.podman_name)

    def _terminate_unplanned(self, worker: PodWorker, pod: dict[str, Any], start_time: str) -> dict[str, Any]:
        """A pod being deleted that cannot be planned again because a ConfigMap or Secret it uses is gone: the
        namespace controller deletes those beside the pods, in no set order. Stopped with the plan it last ran
        with; without one, nothing of it was created by this worker (it waited on that object), and podman
        keeps nothing of it that the orphan sweep would not remove once the pod is gone."""
        if worker.plan is not None:
            return self._terminate(worker, worker.plan, start_time)
        spec = pod.get("spec") or {}
        worker.terminated = True
        return deleted_status(str(spec.get("restartPolicy", "Always")),
                              [(str(c.get("name")), str(c.get("image", ""))) for c in spec.get("containers") or []],
                              host_ip=self.host_ip, start_time=start_time)

    def _terminate(self, worker: PodWorker, plan: PodPlan, start_time: str) -> dict[str, Any]:
        if not worker.terminated:
            log.info("pod %s is being deleted: stopping it with %d s grace", plan.key, plan.grace_s)
            self.runtime.remove_pod(plan.podman_name, plan.grace_s)
            worker.terminated = True
        return deleted_status(plan.restart_policy, [(c.name, c.image) for c in plan.containers],
                              host_ip=self.host_ip, start_time=start_time)


def _orphan_key(podman_name: str) -> ResourceKey:
    namespace, _, name = podman_name.partition("_")
    try:
        return ResourceKey(namespace, "pod", name)
    except ValueError:
        return ResourceKey(None, "pod", "orphan")
