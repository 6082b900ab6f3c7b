"""``kubectl logs`` of edge pods, end to end on the real parts: kubectl, kube-apiserver (with its kubelet client
certificate), the cloud stream server, the cloud broker, the bridge, the node's stream end and podman."""

from __future__ import annotations

import re
import ssl
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from typing import Any

import pytest
from podman import PodmanClient

from runtime.bus import Bus, BusSettings
from runtime.connection import ConnectionSettings
from runtime.pki import CertificateAuthority
from runtime.streamflow import DEFAULT_WINDOW
from runtime.url import BrokerUrl
from schemas import topics
from schemas.envelope import Group, Op
from schemas.streamframe import Frame, Kind, decode
from schemas.streamrequest import LogRequest
from tests.fixtures.mqtt import TestClient
from tests.fixtures.processes import wait_until
from tests.integration.test_end_to_end import pod_manifest, running
from tests.support.cluster import CLOUD_PW, STREAMS_PER_NODE, Cluster, node_names

KUBECTL_TIMEOUT_S = 30.0
# Known lines on stdout and stderr, then quiet; a second container with its own line.
WRITER = "for i in 1 2 3 4 5; do echo line $i; done; echo oops >&2; sleep 3600"
TICKER = "i=0; while true; do i=$((i+1)); echo tick $i; sleep 0.2; done"


def kubectl(cluster: Cluster, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    argv = ["kubectl", "--kubeconfig", str(cluster.api.kubeconfig), "-n", cluster.namespace, *args]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=KUBECTL_TIMEOUT_S, check=False)
    if check:
        assert result.returncode == 0, f"kubectl {' '.join(args)} failed:\n{result.stdout}{result.stderr}"
    return result


def logs(cluster: Cluster, *args: str) -> str:
    return kubectl(cluster, "logs", *args).stdout


def start_pod(cluster: Cluster, name: str, node: str, command: str, **spec: Any) -> None:
    cluster.core.create_namespaced_pod(cluster.namespace, pod_manifest(name, node, command, **spec))
    wait_until(lambda: running(cluster, name), timeout=30, what=f"{name} Running")


def test_node_advertises_the_stream_server_as_its_kubelet(cluster_factory: Any) -> None:
    (node,) = node_names(1)
    cluster: Cluster = cluster_factory([node])
    status = wait_until(lambda: bool((s := cluster.core.read_node(node).status).daemon_endpoints.kubelet_endpoint.port)
                        and s, timeout=20, what="the kubelet endpoint in the node's status")  # port 0: none yet
    assert status.daemon_endpoints.kubelet_endpoint.port == cluster.stream_port
    addresses = {a.type: a.address for a in status.addresses}
    assert addresses["Hostname"] == "127.0.0.1"  # the stream server's host, where the API server dials
    assert addresses["InternalIP"]  # the node's own, as it reported it


def test_kubectl_logs_options(cluster_factory: Any) -> None:
    (node,) = node_names(1)
    cluster: Cluster = cluster_factory([node])
    start_pod(cluster, "writer", node, WRITER)
    wait_until(lambda: logs(cluster, "writer").endswith("oops\n"), timeout=15, what="writer's lines in its log")

    assert logs(cluster, "writer") == "line 1\nline 2\nline 3\nline 4\nline 5\noops\n"
    assert logs(cluster, "writer", "--tail=2") == "line 5\noops\n"
    assert logs(cluster, "writer", "--limit-bytes=10") == "line 1\nlin"
    assert logs(cluster, "writer", "-c", "main", "--since=1h") == "line 1\nline 2\nline 3\nline 4\nline 5\noops\n"
    stamped = logs(cluster, "writer", "--timestamps").splitlines()
    assert len(stamped) == 6
    for line, text in zip(stamped, ["line 1", "line 2", "line 3", "line 4", "line 5", "oops"], strict=True):
        # The kubelet's RFC3339Nano, as read from the container's log file (podman's log API gives whole seconds)
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{1,9}(Z|[+-]\d\d:\d\d) " + text, line), line

    refused = kubectl(cluster, "logs", "writer", "--previous", check=False)
    assert refused.returncode != 0
    assert 'previous terminated container "main" in pod "writer" not found' in refused.stderr


# Runs 0 and 1 fail (1 again at once, 2 after the first back-off of 10 s); run 2 stays up. The count survives
# restarts in the pod's emptyDir, so each run's log says which run it is.
THREE_RUNS = ("n=$(cat /data/n 2>/dev/null || echo 0); echo run $n; echo $((n+1)) > /data/n; "
              "if [ $n -ge 2 ]; then exec sleep 3600; fi; exit $((n+1))")


def _instances(cluster: Cluster, pod: str) -> list[int]:
    """The attempts podman holds of the pod's container ``main``."""
    wanted = {"io.edgehive.namespace": cluster.namespace, "io.edgehive.pod": pod, "io.edgehive.container": "main"}
    with PodmanClient(base_url=cluster.podman.base_url) as client:
        listed = client.containers.list(all=True, filters={"label": f"io.edgehive.pod={pod}"})
        found = [c.attrs.get("Labels") or {} for c in listed]
    return sorted(int(labels["io.edgehive.attempt"]) for labels in found if wanted.items() <= labels.items())


def _main_status(cluster: Cluster, pod: str) -> Any:
    found = cluster.pod(pod)
    return (found.status.container_statuses or [None])[0] if found is not None else None


def test_kubectl_logs_previous_shows_the_run_before(cluster_factory: Any) -> None:
    (node,) = node_names(1)
    cluster: Cluster = cluster_factory([node])
    manifest = pod_manifest("crashy", node, THREE_RUNS, volumes=[{"name": "d", "emptyDir": {}}],
                            container={"volumeMounts": [{"name": "d", "mountPath": "/data"}]})
    cluster.core.create_namespaced_pod(cluster.namespace, manifest)
    # In its back-off after run 1, the container's last state is run 1: both logs show it, as a kubelet's do.
    wait_until(lambda: (s := _main_status(cluster, "crashy")) is not None and s.state.waiting is not None
               and s.state.waiting.reason == "CrashLoopBackOff" and s.restart_count == 1, timeout=30,
               what="crashy in CrashLoopBackOff after run 1")
    assert logs(cluster, "crashy") == "run 1\n"
    assert logs(cluster, "crashy", "--previous") == "run 1\n"
    assert _instances(cluster, "crashy") == [0, 1]  # run 0 is kept until a restart makes run 1 the previous
    wait_until(lambda: running(cluster, "crashy"), timeout=40, what="run 2 running after the back-off")
    assert logs(cluster, "crashy") == "run 2\n"
    assert logs(cluster, "crashy", "--previous") == "run 1\n"
    assert logs(cluster, "crashy", "-p", "--timestamps").endswith(" run 1\n")
    last = _main_status(cluster, "crashy").last_state.terminated
    assert (last.exit_code, last.reason) == (2, "Error")
    assert _instances(cluster, "crashy") == [1, 2]  # one previous instance: run 0's went with run 2's start
    # A container that never restarted has no previous instance: kubelet's answer, word for word.
    start_pod(cluster, "steady", node, WRITER)
    refused = kubectl(cluster, "logs", "steady", "--previous", check=False)
    assert refused.returncode != 0
    assert 'previous terminated container "main" in pod "steady" not found' in refused.stderr
    # The kept instance goes with its pod.
    cluster.core.delete_namespaced_pod("crashy", cluster.namespace)
    wait_until(lambda: not _instances(cluster, "crashy"), timeout=30, what="crashy's containers removed")


def test_kubectl_logs_of_one_container_and_follow(cluster_factory: Any) -> None:
    (node,) = node_names(1)
    cluster: Cluster = cluster_factory([node])
    side = {"name": "side", "image": "localhost/busybox:latest", "imagePullPolicy": "IfNotPresent",
            "command": ["sh", "-c", "echo side-car ready; sleep 3600"]}
    manifest = pod_manifest("pair", node, TICKER)
    manifest["spec"]["containers"].append(side)
    cluster.core.create_namespaced_pod(cluster.namespace, manifest)
    wait_until(lambda: running(cluster, "pair"), timeout=30, what="pair Running")
    assert logs(cluster, "pair", "-c", "side") == "side-car ready\n"
    both = sorted(logs(cluster, "pair", "--all-containers", "--tail=1").splitlines())  # kubectl's order varies
    assert len(both) == 2
    assert both[0] == "side-car ready"
    assert re.fullmatch(r"tick \d+", both[1])
    missing = kubectl(cluster, "logs", "pair", "-c", "nope", check=False)
    assert missing.returncode != 0
    assert "container nope is not valid for pod pair" in missing.stderr

    follow = subprocess.Popen(["kubectl", "--kubeconfig", str(cluster.api.kubeconfig), "-n", cluster.namespace,
                               "logs", "-f", "pair", "-c", "main", "--tail=1"], stdout=subprocess.PIPE, text=True)
    try:
        assert follow.stdout is not None
        seen = [follow.stdout.readline() for _ in range(4)]
    finally:
        follow.kill()
        follow.wait(timeout=10)
    numbers = [int(m.group(1)) for line in seen if (m := re.fullmatch(r"tick (\d+)\n", line))]
    assert len(numbers) == 4, seen
    assert numbers == list(range(numbers[0], numbers[0] + 4)), seen  # in order, none lost or repeated


def test_logs_of_a_node_whose_link_is_down_fail_fast(cluster_factory: Any) -> None:
    (node,) = node_names(1)
    cluster: Cluster = cluster_factory([node])
    start_pod(cluster, "quiet", node, WRITER)
    wait_until(lambda: logs(cluster, "quiet").endswith("oops\n"), timeout=15, what="the log through the link")
    _edge, link = cluster.nodes[node]
    link.down()
    down = f"Internal error occurred: node {node} is not connected: its link to the cloud is down"
    # CloudHub declares the node gone after its keepalive timeout; from then on, every request fails at once.
    wait_until(lambda: down in kubectl(cluster, "logs", "quiet", check=False).stderr, timeout=30,
               what="kubectl logs refused while the link is down")
    t0 = time.monotonic()
    refused = kubectl(cluster, "logs", "quiet", check=False)
    assert refused.returncode != 0
    assert down in refused.stderr
    assert time.monotonic() - t0 < 5
    link.up()
    wait_until(lambda: kubectl(cluster, "logs", "quiet", check=False).stdout.endswith("oops\n"), timeout=30,
               what="kubectl logs working again once the link is back")


def _stream_server_get(cluster: Cluster, path: str, cert: tuple[bytes, bytes] | None) -> tuple[int, str]:
    context = ssl.create_default_context(cafile=str(cluster.api.ca_file))
    if cert is not None:
        key_file, cert_file = cluster.workdir / "other.key", cluster.workdir / "other.crt"
        key_file.write_bytes(cert[0])
        cert_file.write_bytes(cert[1])
        context.load_cert_chain(str(cert_file), str(key_file))
    try:
        with urllib.request.urlopen(f"https://127.0.0.1:{cluster.stream_port}{path}", context=context,
                                    timeout=10) as response:
            return int(response.status), response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_only_the_api_servers_kubelet_client_certificate_opens_streams(cluster_factory: Any) -> None:
    (node,) = node_names(1)
    cluster: Cluster = cluster_factory([node])
    start_pod(cluster, "secret-log", node, WRITER)
    path = f"/containerLogs/{cluster.namespace}/secret-log/main"
    with pytest.raises((ssl.SSLError, urllib.error.URLError, ConnectionError)):
        _stream_server_get(cluster, path, None)  # no client certificate: the handshake fails
    pki = cluster.api.ca_file.parent
    ca = CertificateAuthority((pki / "ca.crt").read_bytes(), (pki / "ca.key").read_bytes())
    code, body = _stream_server_get(cluster, path, ca.issue("someone-else", client=True))
    assert code == 403
    assert "may not open streams" in body
    # The API server's own certificate is the one that works.
    wait_until(lambda: logs(cluster, "secret-log").endswith("oops\n"), timeout=15, what="the log for the API server")


def test_a_node_refuses_a_stream_for_a_pod_that_is_not_on_it(cluster_factory: Any) -> None:
    first, second = node_names(2)
    cluster: Cluster = cluster_factory([first, second])
    start_pod(cluster, "on-second", second, WRITER)
    broker = cluster.cloud_broker
    request = LogRequest(cluster.namespace, "on-second", "main").as_map()
    with TestClient(broker.host, broker.port, username="cloud", password=CLOUD_PW) as cloud:
        cloud.subscribe(topics.stream(first, topics.Direction.UP))
        sid = "ab" * 16
        cloud.publish(topics.stream(first, topics.Direction.DOWN),
                      Frame(first, sid, Kind.OPEN, credit=DEFAULT_WINDOW, req=request).encode())
        answer = decode(cloud.expect().payload)
        assert (answer.sid, answer.kind, answer.code) == (sid, Kind.ERROR, 404)
        assert answer.reason == f"pod {cluster.namespace}/on-second is not on node {first}"
        # A frame addressed to another node, even on this node's own topic, is refused too.
        cloud.publish(topics.stream(first, topics.Direction.DOWN),
                      Frame(second, "cd" * 16, Kind.OPEN, credit=DEFAULT_WINDOW, req=request).encode())
        answer = decode(cloud.expect().payload)
        assert (answer.sid, answer.code) == ("cd" * 16, 403)
    assert logs(cluster, "on-second") == "line 1\nline 2\nline 3\nline 4\nline 5\noops\n"


def _follow(cluster: Cluster, pod: str) -> subprocess.Popen[str]:
    return subprocess.Popen(["kubectl", "--kubeconfig", str(cluster.api.kubeconfig), "-n", cluster.namespace,
                             "logs", "-f", pod, "--tail=1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def test_streams_past_the_cap_are_refused_and_a_link_cut_ends_followers(cluster_factory: Any) -> None:
    (node,) = node_names(1)
    cluster: Cluster = cluster_factory([node])
    start_pod(cluster, "ticker", node, TICKER)
    followers = [_follow(cluster, "ticker") for _ in range(STREAMS_PER_NODE)]
    try:
        for follower in followers:
            assert follower.stdout is not None
            assert follower.stdout.readline().startswith("tick ")  # each stream open and flowing
        refused = kubectl(cluster, "logs", "ticker", check=False)
        assert refused.returncode != 0
        assert "TooManyRequests" in refused.stderr
        # A reader that goes away frees its stream (the cloud end sees it and tells the node to stop).
        followers.pop().kill()
        wait_until(lambda: kubectl(cluster, "logs", "ticker", "--tail=1", check=False).stdout.startswith("tick "),
                   timeout=30, what="a stream free again after one follower stopped")
        # The link goes down: every follower's stream ends instead of hanging, its log ending with a line that
        # says why. kubectl exits 0 all the same, whether the stream server ends the body without its last chunk
        # (as it does) or resets the connection (tried): kube-apiserver v1.20 copies a log with io.Copy and
        # drops the error, ending its own response to kubectl cleanly (cloud/stream/https.py, _break).
        _edge, link = cluster.nodes[node]
        link.down()
        for follower in followers:
            out, _err = follower.communicate(timeout=30)
            assert out.startswith("tick ")
            assert out.splitlines()[-1].startswith(f"error: the link to node {node} was lost ("), out[-300:]
    finally:
        for follower in followers:
            follower.kill()
            follower.wait(timeout=10)
    link.up()
    wait_until(lambda: kubectl(cluster, "logs", "ticker", "--tail=1", check=False).stdout.startswith("tick "),
               timeout=30, what="kubectl logs working again once the link is back")


FLOOD = "while true; do head -c 100000 /dev/zero | tr '\\0' x; echo; sleep 0.05; done"  # about 2 MB/s


def _bytes_sent(cluster: Cluster, node: str) -> int:
    """What the node's stream end has sent up so far (its counters, asked on its inbox)."""
    edge, _link = cluster.nodes[node]
    prober = Bus(BusSettings(ConnectionSettings(url=BrokerUrl.parse(edge.edge_broker.url()),
                                                client_id=f"prober-{uuid.uuid4().hex[:6]}"),
                             module="prober", side=topics.Side.EDGE, node=node)).start()
    try:
        reply = prober.request(topics.inbox(topics.Side.EDGE, "stream"), prober.envelope(Group.HUB, Op.QUERY))
    finally:
        prober.close()
    assert isinstance(reply.body, dict)
    return int(reply.body["counters"].get("stream_bytes_sent", 0))


def test_a_reader_that_stops_reading_stops_the_node_sending(cluster_factory: Any) -> None:
    """Flow control end to end: while kubectl reads nothing, the node stops reading podman and sending, although
    the container keeps writing; once kubectl reads again, the log flows again."""
    (node,) = node_names(1)
    cluster: Cluster = cluster_factory([node])
    start_pod(cluster, "flood", node, FLOOD)
    reader = _follow(cluster, "flood")
    samples: list[int] = []

    def stalled() -> bool:
        samples.append(_bytes_sent(cluster, node))
        return len(samples) >= 3 and samples[-1] == samples[-2] == samples[-3] and samples[-1] > 0

    try:
        wait_until(stalled, timeout=90, interval=1.0, what="the node's sending to stop while nobody reads")
        print(f"\nthe node held back after sending {samples[-1]} bytes to a reader that read none")
        assert reader.stdout is not None
        # Read more than the node had sent when it held back: the rest can only have come after the reader's
        # credit flowed back to it. (Not asked of the node's counters: with the log flowing at full speed, its
        # answer to a query can wait long behind the data on a loaded machine.)
        taken, wanted = 0, samples[-1] + 2_000_000
        deadline = time.monotonic() + 60
        while taken < wanted and time.monotonic() < deadline:
            taken += len(reader.stdout.readline())
        assert taken >= wanted, f"read {taken} bytes of the log, not the {wanted} that show it flowing again"
    finally:
        reader.kill()
        reader.wait(timeout=10)
