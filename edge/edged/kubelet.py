"""EdgeD's core: make what runs in podman match the pods this node should run, and say how they are.

A sync pass lists this node's containers once, then lets each pod's worker act on
its own pod in a thread pool (so one slow image or a long graceful stop holds up
no other pod): create the podman pod and containers, restart what exited as the
restart policy says with CrashLoopBackOff delays, run probes, stop what is
deleted, and remove what no pod claims. A pass runs when a pod or its
ConfigMaps/Secrets change and every second; status goes upstream only when it
changes. What is done to one container (create, restart, probe, hooks, its
view) is in containeractions.py; this module decides which and when.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from edge.edged import hooks
from edge.edged.admission import Admission, check_limits, pod_requests
from edge.edged.containeractions import ContainerActions
from edge.edged.events import EVERY_PASS_S, EventRecorder, config_wait_event
from edge.edged.hostfacts import HostFacts
from edge.edged.hostpaths import MountFailed
from edge.edged.initcontainers import next_init, runs_again
from edge.edged.node import capacity
from edge.edged.node import host_ip as node_host_ip
from edge.edged.nodeclaim import NodeTaken
from edge.edged.podfields import FieldRefused
from edge.edged.podspec import ConfigError, ContainerPlan, PodPlan, PodSpecError, plan_pod, podman_pod_name
from edge.edged.podworker import (
    PodWorker,
    ended,
    newest_attempts,
    previous_attempts,
    restart_policy,
    running_containers,
    superseded,
)
from edge.edged.projection import NodeSide, node_allocatable
from edge.edged.runtime import ContainerRuntimeError, Observed, PodmanRuntime
from edge.edged.status import deleted_status, failed_status, pod_status, waiting_status
from edge.edged.tokens import TokenKeeper
from edge.edged.volumes import Volumes
from runtime.counters import Counters
from runtime.metrics import REFUSED_FIELD
from schemas.kinds import PV
from schemas.kubeobj import ObjectMeta, meta
from schemas.podrefs import config_refs
from schemas.resource import ResourceKey
from schemas.timefmt import rfc3339

log = logging.getLogger(__name__)

SYNC_PERIOD_S = 1.0
MIN_PASS_INTERVAL_S = 0.1
REFUSED_SAY_S = 60.0
"""How often EdgeD says again that another EdgeD has its node on this podman (edge/edged/nodeclaim.py)."""

StatusSink = Callable[[ResourceKey, ObjectMeta, dict[str, Any]], None]
"""Receives (pod key, pod metadata, status) whenever a pod's status changes."""


class Kubelet:
    def __init__(self, node: str, runtime: PodmanRuntime, volumes: Volumes, report: StatusSink,
                 *, host_ip: str = "", workers: int = 8, tokens: TokenKeeper | None = None,
                 downward_allocatable: Mapping[str, float] | None = None, facts: HostFacts | None = None,
                 counters: Counters | None = None, allocatable: Callable[[], dict[str, str]] = capacity,
                 events: EventRecorder | None = None) -> None:
        self.node = node
        self.events = events or EventRecorder(node)
        self.runtime = runtime
        self.volumes = volumes
        self.report = report
        self.host_ip = host_ip or node_host_ip()
        self.containers = ContainerActions(runtime, volumes, self.host_ip, self._lookup, self.events)
        self.tokens = tokens
        # What a missing limit reads as in the downward API (projection.py), and where tokens come from.
        self.node_side = NodeSide(self.host_ip, node_allocatable(Path("/")) if downward_allocatable is None
                                  else downward_allocatable, tokens.token if tokens else None)
        self._lock = threading.Lock()
        self._pods: dict[ResourceKey, dict[str, Any]] = {}
        self._config: dict[ResourceKey, dict[str, Any]] = {}
        self._workers: dict[str, PodWorker] = {}  # by pod UID
        self._unasked: set[str] | None = None
        """The pods whose sandbox is still to be checked (below, ``_lost_sandboxes``): None, every pod, at the
        first pass after a start; then those podman could not be asked about."""
        self._deleted_grace: dict[str, int] = {}
        self._pod_refs: dict[ResourceKey, frozenset[ResourceKey]] = {}
        self._used_by: dict[ResourceKey, list[ResourceKey]] = {}
        """Each ConfigMap, Secret or claim a desired pod uses, and the pods that use it."""
        self._sources_changed: dict[ResourceKey, int] = {}
        """Per pod: how many times something it uses changed. Counted as each change comes, so that a pass reads
        one number per pod: summing each source's version per pass was a fifth of EdgeD's time with a pod that
        projects thousands of ConfigMaps (``edgehive bench cloud``)."""
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="pod-worker")
        self._kick = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="kubelet-sync", daemon=True)
        self.ready = threading.Event()  # set once the desired state has been loaded
        self.facts = facts or HostFacts()
        self.counters = counters or Counters()
        self.admission = Admission(allocatable)
        self._refusals_counted: set[tuple[str, str]] = set()

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
        used_by: dict[ResourceKey, list[ResourceKey]] = {}
        for pod_key, refs in self._pod_refs.items():
            for ref in refs:
                used_by.setdefault(ref, []).append(pod_key)
        self._used_by = used_by
        self._sources_changed = {k: n for k, n in self._sources_changed.items() if k in self._pods}

    def set_config(self, key: ResourceKey, obj: dict[str, Any] | None) -> None:
        """A ConfigMap or Secret changed: the pods that use it sync again (files are rewritten)."""
        with self._lock:
            if obj is None:
                self._config.pop(key, None)
            else:
                self._config[key] = obj
            for pod_key in self._used_by.get(key, ()):
                self._sources_changed[pod_key] = self._sources_changed.get(pod_key, 0) + 1
            used = key in self._used_by or key.kind == PV  # a PersistentVolume is used through its claim
        if used:
            self._kick.set()

    def replace_all(self, pods: dict[ResourceKey, dict[str, Any]], config: dict[ResourceKey, dict[str, Any]]) -> None:
        with self._lock:
            self._pods = dict(pods)
            self._config = dict(config)
            self._index_refs()
            for pod_key in self._pods:  # everything may have changed
                self._sources_changed[pod_key] = self._sources_changed.get(pod_key, 0) + 1
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
            return str(meta(pod).resource_version), self._sources_changed.get(worker.key, 0), token_stamp

    def _lookup(self, key: ResourceKey) -> dict[str, Any] | None:
        with self._lock:
            return self._config.get(key)

    def resource_version(self, key: ResourceKey) -> str | None:
        """The resourceVersion of the desired pod ``key`` (an event's involvedObject names it)."""
        with self._lock:
            pod = self._pods.get(key)
        return None if pod is None else meta(pod).resource_version

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
        refused_said = -REFUSED_SAY_S
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
            except NodeTaken as exc:
                # Tried again each pass (the other may stop), said once a minute.
                if time.monotonic() - refused_said >= REFUSED_SAY_S:
                    refused_said = time.monotonic()
                    log.error("not touching podman: %s", exc)
            except ContainerRuntimeError as exc:
                log.warning("sync pass failed: %s", exc)
            except Exception:
                log.exception("sync pass failed")

    def sync_once(self) -> None:
        self.runtime.claim_node()  # before anything of podman's is touched: see edge/edged/nodeclaim.py
        with self._lock:
            desired = dict(self._pods)
        # A pod new to this pass starts at once, its worker reading podman for that pod alone: the list of the
        # whole node below waits on every container podman is creating or starting (seconds, in a burst).
        for key, pod in desired.items():
            uid = meta(pod).uid or ""
            if uid not in self._workers:
                worker = self._workers[uid] = PodWorker(key, uid)
                worker.busy = self._pool.submit(self._sync_new_pod, worker, pod)
        # Only workers idle before podman is listed may act on the listing: one that finished a create after
        # it would be handed a list without its new container and create it again under the next name.
        busy_before = {uid for uid, w in self._workers.items() if w.busy is not None and not w.busy.done()}
        observed = self.runtime.containers()
        podman_pods = self.runtime.pods()
        by_uid: dict[str, list[Observed]] = {}
        for o in observed:
            by_uid.setdefault(o.pod_uid, []).append(o)
        lost = self._lost_sandboxes(podman_pods, by_uid,
                                    {meta(p).uid or "": restart_policy(p) for p in desired.values()})
        wanted_uids: set[str] = set()
        for pod in desired.values():
            uid = meta(pod).uid or ""
            wanted_uids.add(uid)
            worker = self._workers[uid]
            if uid in lost and ((pod.get("spec") or {}).get("restartPolicy") != "Never"
                                or not any(o.running for o in by_uid.get(uid, []))):
                worker.remake = True  # (under Never, a container that was running when killed is not run again)
            if uid not in busy_before and (worker.busy is None or worker.busy.done()):
                worker.busy = self._pool.submit(self._sync_pod_safely, worker, pod, by_uid.get(uid, []),
                                                podman_pods)
        self._remove_orphans(wanted_uids, by_uid, podman_pods, busy_before)

    def _lost_sandboxes(self, podman_pods: dict[str, str], by_uid: dict[str, list[Observed]],
                        policies: Mapping[str, str]) -> set[str]:
        """At the first pass after EdgeD starts: the UIDs of the desired pods (``policies``: UID -> restartPolicy)
        that have not ended whose sandbox is gone while podman calls it running (EdgeD and podman killed with
        the pods' conmons: see PodmanRuntime.sandbox_lost); podman would refuse to start them for ever. Each is
        made again, which also removes its network namespace."""
        if self._unasked is not None and not self._unasked:
            return set()
        lost: set[str] = set()
        unasked: set[str] = set()
        for name, uid in podman_pods.items():
            if self._unasked is not None and name not in self._unasked:
                continue
            if uid not in policies or ended(policies[uid], by_uid.get(uid, [])):
                continue  # a pod that has ended is left as it ended
            answer = self.runtime.sandbox_lost(name)
            if answer is None:
                unasked.add(name)
            elif answer:
                lost.add(uid)
        # A pod podman could not be asked about (its service not answering yet when EdgeD came back from a power
        # cut) is asked again at the next pass, until podman answers or the pod is gone: checked only once, such a
        # pod stayed "running" in podman, with no process, for good (a CI run of test_power_loss).
        self._unasked = unasked
        for uid in lost:
            log.info("pod uid %s: its sandbox died unrecorded by podman; making the pod again", uid)
        return lost

    def _remove_orphans(self, wanted: set[str], by_uid: dict[str, list[Observed]], podman_pods: dict[str, str],
                        busy_before: set[str]) -> None:
        for name, uid in podman_pods.items():
            if uid in wanted or uid in busy_before:
                continue
            worker = self._workers.get(uid)
            if worker is not None and worker.busy is not None and not worker.busy.done():
                continue
            log.info("removing pod %s (uid %s): no longer assigned to this node", name, uid)
            self._workers[uid] = worker = worker or PodWorker(_orphan_key(name), uid)
            worker.busy = self._pool.submit(self._remove_pod, name, uid, self._deleted_grace.pop(uid, 0),
                                            worker.plan, by_uid.get(uid, []))
        for uid in list(self._workers):
            if uid not in wanted and uid not in by_uid:
                worker = self._workers[uid]
                if worker.busy is None or worker.busy.done():
                    del self._workers[uid]
                    if self.tokens is not None:
                        self.tokens.forget(uid)
                    self.admission.forget(uid)
                    self._refusals_counted = {r for r in self._refusals_counted if r[0] != uid}
        for uid in self.volumes.known_uids() - wanted - set(by_uid):
            self.volumes.remove(uid)

    def _remove_pod(self, podman_name: str, uid: str, grace: int, plan: PodPlan | None,
                    observed: list[Observed]) -> None:
        """``plan``: the pod's last plan, if EdgeD made one (its preStop hooks run first)."""
        try:
            if plan is None:
                self.runtime.remove_pod(podman_name, grace)
            else:
                hooks.remove_pod(self.runtime, podman_name, running_containers(plan, newest_attempts(observed)), grace,
                                 lambda: self.containers.pod_address(plan))
            self.volumes.remove(uid)
        except ContainerRuntimeError as exc:
            log.warning("could not remove pod %s: %s", podman_name, exc)

    def _sync_new_pod(self, worker: PodWorker, pod: dict[str, Any]) -> None:
        """A pod's first pass, on what podman holds of that pod alone (all of it, after a restart of EdgeD)."""
        found = meta(pod)
        podman_name = podman_pod_name(found.namespace or "", found.name or "")
        try:
            observed = self.runtime.containers(worker.uid)
            uid = self.runtime.pod_uid(podman_name)
        except ContainerRuntimeError as exc:
            log.warning("pod %s: %s", worker.key, exc)  # the next pass lists the node and tries again
            return
        self._sync_pod_safely(worker, pod, observed, {} if uid is None else {podman_name: uid})

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
        if status is not None and status.get("phase") in ("Succeeded", "Failed"):
            self.admission.release(worker.uid)

    # -- one pod -------------------------------------------------------------------------

    def sync_pod(self, worker: PodWorker, pod: dict[str, Any], observed: list[Observed],
                 podman_pods: dict[str, str]) -> dict[str, Any] | None:
        start_time = rfc3339(worker.started)
        signature = self._signature(worker, pod)
        try:
            if worker.plan is not None and worker.plan_stands(signature, time.monotonic()):
                plan, fresh = worker.plan, False
            else:
                began = time.monotonic()
                plan, fresh = plan_pod(pod, self.node, self._lookup, side=self.node_side, facts=self.facts), True
                worker.planned_at = time.monotonic()
                worker.plan_cost_s = worker.planned_at - began
        except ConfigError as exc:
            if meta(pod).deletion_timestamp:  # what it mounted may be gone first (kubectl delete namespace)
                return self._terminate_unplanned(worker, pod, start_time, newest_attempts(observed))
            self.events.pod(worker.key, worker.uid, *config_wait_event(pod, exc, self._lookup),
                            warning=True, every_s=EVERY_PASS_S)
            return waiting_status(pod, exc.reason, exc.message, self.host_ip, start_time)
        except FieldRefused as exc:
            return self._refused(worker, exc, start_time)
        except PodSpecError as exc:
            return failed_status(exc.reason, exc.message, self.host_ip, start_time)
        except (KeyError, TypeError, ValueError) as exc:
            return failed_status("InvalidSpec", f"the pod spec is malformed: {exc}", self.host_ip, start_time)

        latest = newest_attempts(observed)
        if meta(pod).deletion_timestamp:
            return self._terminate(worker, plan, start_time, latest)
        try:
            check_limits(pod.get("spec") or {})
            rejection = self.admission.admit(plan.uid, pod_requests(pod.get("spec") or {}),
                                             running=podman_pods.get(plan.podman_name) == plan.uid)
        except FieldRefused as exc:
            return self._refused(worker, exc, start_time)
        if rejection is not None:
            return failed_status(rejection.reason, rejection.message, self.host_ip, start_time)

        if fresh:  # planning again means something changed: the files that changed are written again
            try:
                self.volumes.prepare(plan)
            except MountFailed as exc:
                if not observed:  # kubelet's FailedMount: the pod waits, and the next pass tries again
                    self.events.pod(plan.key, plan.uid, "FailedMount", str(exc), warning=True, every_s=EVERY_PASS_S)
                    return waiting_status(pod, "ContainerCreating", str(exc), self.host_ip, start_time)
                # Set up when the pod started; kubelet does not check a mounted volume again (a socket whose
                # daemon restarts is not the running pod's failure).
                log.warning("pod %s: %s", plan.key, exc)
            except OSError as exc:
                self.events.pod(plan.key, plan.uid, "FailedMount", f"MountVolume.SetUp failed: {exc}", warning=True,
                                every_s=EVERY_PASS_S)
                raise
            worker.plan, worker.plan_signature = plan, signature
        if (latest and podman_pods.get(plan.podman_name) == plan.uid and runs_again(plan, latest)
                and not self.runtime.sandbox_running(plan.podman_name)):
            log.info("pod %s: its sandbox has stopped; making the pod again, init containers first", plan.key)
            worker.remake = True
        if podman_pods.get(plan.podman_name) != plan.uid or worker.remake:
            if plan.podman_name in podman_pods:  # an older pod of the same name, or a broken one: replaced
                self.runtime.remove_pod(plan.podman_name, plan.grace_s)
            self.runtime.create_pod(plan)
            worker.pod_started = worker.remake = False
            worker.pod_ip = ""
            observed, latest = [], {}
        if any(o.started_at > 0 for o in observed):  # a pod start would start its ended containers again
            worker.pod_started = True
        pending_init = next_init(plan, latest)
        created: dict[str, ContainerPlan] = {}
        now = time.time()
        for container in [pending_init] if pending_init is not None else plan.containers:
            book = worker.book(container.name)
            current = latest.get(container.name)
            if current is not None and current.spec_hash != container.spec_hash:
                log.info("pod %s: container %s changed; replacing it", plan.key, container.name)
                if current.running:
                    self.containers.kill(plan, container, current.id, plan.grace_s)
                if not current.started_at:  # one that never ran is no one's previous instance
                    self.runtime.remove_container(current.id)
                book.last_terminated = None  # the replaced one is the last state now (read from podman)
                new_id = self.containers.create(plan, container, book, current.attempt + 1)
                if new_id:
                    created[new_id] = container
                    self._drop(superseded(observed, container.name, current.attempt))
                continue
            if current is None:
                new_id = self.containers.create(plan, container, book, 0)
                if new_id:
                    created[new_id] = container
                elif book.waiting_reason == "CreateContainerError" and not observed:
                    worker.remake = True  # nothing of ours runs in that pod: nothing is lost by making it again
            elif current.running:
                book.waiting_reason = None
                self.containers.probe(plan, container, book, current, now)
            elif current.finished:
                new_id = self.containers.maybe_restart(plan, container, book, current, now)
                if new_id:
                    created[new_id] = container
                    self._drop(superseded(observed, container.name, current.attempt))  # current is kept
            elif current.state in ("created", "configured", "initialized"):
                created[current.id] = container
        if created:
            if not worker.pod_started:
                try:
                    self.runtime.start_pod(plan.podman_name)
                except ContainerRuntimeError:
                    # As kubelet makes a new sandbox when one fails: a sandbox whose start a killed podman cut
                    # short fails every later start the same way (CNI finds its address taken, by itself).
                    worker.remake = True
                    raise
                worker.pod_started = True
            else:
                for container_id in created:
                    self.runtime.start_container(container_id)
            for container_id, container in created.items():
                self.events.container(plan, container, "Started", f"Started container {container.name}")
                self.containers.post_start(plan, container, worker.book(container.name), container_id)
            # This pod's containers read again, so that the status reported now says Running. Left to the next
            # pass, that report queued in the pool behind every other pod's create: of 100 pods created at once,
            # none was reported Running until the last was made (35 s on a loaded 2-core machine).
            observed = self.runtime.containers(plan.uid)
            latest = newest_attempts(observed)
            self._kick.set()  # an init container that ends at once lets the next one start without a period's wait
        elif observed:
            worker.pod_started = True
        previous = previous_attempts(observed)
        init_views = [self.containers.view(plan, c, worker.book(c.name), latest.get(c.name),
                                           initializing=pending_init is not None and c is not pending_init,
                                           previous=previous.get(c.name))
                      for c in plan.init_containers]
        views = [self.containers.view(plan, c, worker.book(c.name), latest.get(c.name),
                                      initializing=pending_init is not None, previous=previous.get(c.name))
                 for c in plan.containers]
        return pod_status(plan.restart_policy, views, pod_ip=self._pod_ip(worker, plan),
                          host_ip=self.host_ip, start_time=start_time, since=start_time, init_views=init_views)

    def _drop(self, instances: list[Observed]) -> None:
        """Remove dead instances no one needs: the kubelet keeps one previous instance per container."""
        for instance in instances:
            self.runtime.remove_container(instance.id)

    def _pod_ip(self, worker: PodWorker, plan: PodPlan) -> str:
        """The pod's address, asked of podman (two calls) until it has one, then kept while its sandbox lives: a
        pass every second over 100 running pods asked podman 200 times a second for addresses that never change."""
        if not worker.pod_ip:
            worker.pod_ip = self.containers.pod_address(plan)
        return worker.pod_ip

    def _refused(self, worker: PodWorker, exc: FieldRefused, start_time: str) -> dict[str, Any]:
        """A field this node does not honour: the pod fails, and the field is counted once per pod."""
        if (worker.uid, exc.field) not in self._refusals_counted:
            self._refusals_counted.add((worker.uid, exc.field))
            self.counters.inc(REFUSED_FIELD + exc.field)
            log.warning("pod %s refused: %s", worker.key, exc.message)
        return failed_status(exc.reason, exc.message, self.host_ip, start_time)

    def _terminate_unplanned(self, worker: PodWorker, pod: dict[str, Any], start_time: str,
                             latest: dict[str, Observed]) -> dict[str, Any]:
        """A pod being deleted that cannot be planned again because a ConfigMap or Secret it uses is gone: the
        namespace controller deletes those beside the pods, in no set order. Stopped with the plan it last ran
        with; without one, nothing of it was created by this worker (it waited on that object), and podman
        keeps nothing of it that the orphan sweep would not remove once the pod is gone."""
        if worker.plan is not None:
            return self._terminate(worker, worker.plan, start_time, latest)
        spec = pod.get("spec") or {}
        worker.terminated = True
        return deleted_status(str(spec.get("restartPolicy", "Always")),
                              [(str(c.get("name")), str(c.get("image", ""))) for c in spec.get("containers") or []],
                              host_ip=self.host_ip, start_time=start_time)

    def _terminate(self, worker: PodWorker, plan: PodPlan, start_time: str,
                   latest: dict[str, Observed]) -> dict[str, Any]:
        if not worker.terminated:
            log.info("pod %s is being deleted: stopping it with %d s grace", plan.key, plan.grace_s)
            for _, container in running_containers(plan, latest):
                self.events.container(plan, container, "Killing", f"Stopping container {container.name}")
            hooks.remove_pod(self.runtime, plan.podman_name, running_containers(plan, latest), plan.grace_s,
                             lambda: self.containers.pod_address(plan))
            worker.terminated = True
        return deleted_status(plan.restart_policy, [(c.name, c.image) for c in plan.containers],
                              host_ip=self.host_ip, start_time=start_time,
                              init_containers=[(c.name, c.image) for c in plan.init_containers])


def _orphan_key(podman_name: str) -> ResourceKey:
    namespace, _, name = podman_name.partition("_")
    try:
        return ResourceKey(namespace, "pod", name)
    except ValueError:
        return ResourceKey(None, "pod", "orphan")
