"""One exec or attach at the node: a command run in a container of a pod on this node, through podman.

The pod must be on this node, found by EdgeD's labels as for a log (edge/stream/session.py): any other is
refused (404) whatever the cloud asked. The stream is accepted (its first credit frame, the window the cloud
may send stdin into) only once podman has created the command, so that a bad container or a stopped one is
refused with a reason before kubectl's connection is upgraded. Then the command's output goes up on
channels 1 and 2 and its stdin comes down on channel 0 (edge/stream/socketsession.py), and the exit code
goes up in the closing frame.
"""

from __future__ import annotations

import json
import logging

from edge.stream.podmanapi import PodContainer, PodmanApi, PodmanApiError
from edge.stream.podmanexec import attach, create_exec, demux, exec_exit_code, resize, start_exec
from edge.stream.socketsession import SocketSession
from edge.stream.streamsession import Publish
from runtime.streamflow import SendWindow
from schemas.execrequest import ATTACH, ExecRequest
from schemas.streamframe import Kind

log = logging.getLogger(__name__)


def running_container(api: PodmanApi, node: str, namespace: str, pod: str, container: str) -> PodContainer:
    """The latest attempt of ``container`` of a pod on this node; PodmanApiError 404 or 400 otherwise."""
    found = api.pod_containers(namespace, pod)
    if not found:
        raise PodmanApiError(404, f"pod {namespace}/{pod} is not on node {node}")
    attempts = sorted((c for c in found if c.container == container), key=lambda c: c.attempt)
    if not attempts:
        names = sorted({c.container for c in found})
        raise PodmanApiError(400, f"container {container} is not valid for pod {pod}: choose one of: "
                                  f"{', '.join(names)}")
    latest = attempts[-1]
    if latest.state != "running":
        raise PodmanApiError(400, f"container {container} of pod {namespace}/{pod} is not running "
                                  f"(it is {latest.state or 'unknown'})")
    return latest


class ExecSession(SocketSession):
    def __init__(self, api: PodmanApi, node: str, sid: str, request: ExecRequest, window: SendWindow,
                 publish: Publish) -> None:
        super().__init__(api, node, sid, window, publish)
        self.request = request
        self._exec_id = ""
        self._container_id = ""

    def serve(self) -> None:
        r = self.request
        container = running_container(self.api, self.node, r.namespace, r.pod, r.container)
        self._container_id = container.id
        if r.op == ATTACH:
            sock, first = attach(self.api, container.id, stdin=r.stdin, stdout=r.stdout, stderr=r.stderr)
        else:
            self._exec_id = create_exec(self.api, container.id, list(r.command), stdin=r.stdin, stdout=r.stdout,
                                        stderr=r.stderr, tty=r.tty)
            sock, first = start_exec(self.api, self._exec_id, tty=r.tty)
        if not self.accept(sock):
            return
        with sock:
            for channel, output in demux(sock, first, r.tty):  # an attach's tty is the container's
                self.send(output, channel)
        if self.stop.is_set():
            return
        code = exec_exit_code(self.api, self._exec_id) if self._exec_id else None
        self.publish(self.frame(Kind.CLOSE, code=200, reason="the command ended", exit_code=code))

    def resized(self, data: bytes) -> None:
        try:
            size = json.loads(data)
            width, height = int(size["Width"]), int(size["Height"])
        except (ValueError, KeyError, TypeError):
            log.info("stream %s: a resize that is not {Width, Height}: ignored", self.sid)
            return
        failed = resize(self.api, exec_id=self._exec_id, container_id=self._container_id, width=width, height=height)
        if failed:
            log.warning("stream %s: the terminal was not resized to %dx%d: %s", self.sid, width, height, failed)
