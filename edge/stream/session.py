"""One stream at the node: a container's log read and sent up, no faster than the cloud grants.

The log is read from the container's own ``k8s-file`` log when podman names one this process can open
(edge/stream/logfile.py: the REST log API costs podman several times the CPU per MB and runs at a fraction of
the speed); otherwise, a journald log or a file out of sight (podman in another mount namespace or
container), from podman's REST log API as before.

The pod must be on this node: EdgeD labels what it runs with the node's name, the pod's namespace and
name, so a pod that is not here has no containers under those labels and the stream is refused (404),
whatever the cloud asked.
"""

from __future__ import annotations

import http.client
import logging
import time
from collections.abc import Iterator

from edge.stream.logfile import LogFile, LogOptions
from edge.stream.podmanapi import PodContainer, PodmanApi, PodmanApiError, interrupt
from edge.stream.streamsession import Publish, StreamSession
from runtime.streamflow import SendWindow, StreamEnded
from schemas.streamrequest import LogRequest

log = logging.getLogger(__name__)

class LogSession(StreamSession):
    def __init__(self, api: PodmanApi, node: str, sid: str, request: LogRequest, window: SendWindow,
                 publish: Publish) -> None:
        super().__init__(api, node, sid, window, publish)
        self.request = request
        self._connection: http.client.HTTPConnection | None = None

    def cancel(self, ended: StreamEnded) -> None:
        """The cloud ended the stream (its reader went away) or went silent: stop reading podman now."""
        super().cancel(ended)
        interrupt(self._connection)

    def _register(self, connection: http.client.HTTPConnection) -> None:
        self._connection = connection
        if self.stop.is_set():
            interrupt(connection)

    def run(self) -> None:
        request = self.request
        try:
            container = self._pick()
            sent = 0
            limit = request.limit_bytes
            for read in self._read(container):
                left = read if limit is None else read[:limit - sent]
                self.send(left)
                sent += len(left)
                if limit is not None and sent >= limit:
                    break
            self.close("end of log")
        except (StreamEnded, PodmanApiError) as error:
            self.failed(error)

    def _pick(self) -> PodContainer:
        """The container to read, chosen as the kubelet chooses it from the container's status (pick below)."""
        r = self.request
        found = self.api.pod_containers(r.namespace, r.pod)
        if not found:
            raise PodmanApiError(404, f"pod {r.namespace}/{r.pod} is not on node {self.node}")
        attempts = [c for c in found if c.container == r.container]
        if not attempts:
            names = sorted({c.container for c in found})
            raise PodmanApiError(400, f"container {r.container} is not valid for pod {r.pod}: "
                                      f"choose one of: {', '.join(names)}")
        chosen = pick(attempts, previous=r.previous)
        if chosen is None:
            raise PodmanApiError(400, f'previous terminated container "{r.container}" in pod "{r.pod}" not found')
        return chosen

    def _read(self, container: PodContainer) -> Iterator[bytes]:
        """The log's pieces: from its file when it can be opened, else from podman's log API."""
        try:
            path = self.api.log_file(container.id)
        except PodmanApiError as exc:
            log.info("stream %s: no log file from podman's inspect (%s); reading podman's log API", self.sid, exc)
            path = None
        if path is not None:
            r = self.request
            try:
                file = LogFile(path, LogOptions(r.timestamps, r.tail_lines, self._since()), self.stop)
            except OSError as exc:
                log.info("stream %s: log file %s out of reach (%s); reading podman's log API", self.sid, path, exc)
            else:
                return file.read(r.follow, lambda: self.api.running(container.id))
        return self.api.logs(container.id, self._params(), self.stop, self._register)

    def _since(self) -> float | None:
        r = self.request
        if r.since_time is not None:
            return r.since_time
        return time.time() - r.since_seconds if r.since_seconds is not None else None

    def _params(self) -> dict[str, str]:
        r = self.request
        params = {"stdout": "true", "stderr": "true", "follow": str(r.follow).lower(),
                  "timestamps": str(r.timestamps).lower()}
        if r.tail_lines is not None:
            params["tail"] = str(r.tail_lines)
        since = self._since()
        if since is not None:
            params["since"] = f"{since:.9f}"
        return params


def pick(attempts: list[PodContainer], *, previous: bool) -> PodContainer | None:
    """Of one container's instances (EdgeD keeps the newest and the one before it), the one whose log is shown.

    The kubelet shows the container its status names: the current instance, or with ``previous`` the one in
    its last state. The last state is the newest instance when that has ended and waits for its restart
    (CrashLoopBackOff: then both show it, as with the kubelet), otherwise the instance before the newest that
    ran and ended; None when there is none. An instance made and not started yet has no log: until it runs
    the current one is its last state."""
    ordered = sorted(attempts, key=lambda c: c.attempt)
    newest = ordered[-1]
    before = next((c for c in reversed(ordered[:-1]) if c.ended), None)
    if previous:
        return newest if newest.awaits_restart else before
    if newest.state in ("created", "configured", "initialized") and before is not None:
        return before
    return newest
