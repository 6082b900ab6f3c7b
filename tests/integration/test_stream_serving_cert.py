"""The stream server set up as on a user's cluster, on the real API server: no certificate files given, its serving
certificate issued at start (from the CA the API server checks kubelets against, or from the cluster's edgehive
CA), and its client CA read from the API server (kube-system/extension-apiserver-authentication). Last, a second
kube-apiserver on the same etcd, flagged as kubeadm flags it (no kubelet certificate check, InternalIP first),
reaches the stream server through the README's DNAT rule."""

from __future__ import annotations

import base64
import contextlib
import os
import re
import ssl
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from kubernetes import client as k8s

from cloud.clusterpki import CA_SECRET, NAMESPACE
from runtime.pki import CertificateAuthority
from tests.fixtures.brokers import tcp_ready
from tests.fixtures.processes import ManagedProcess, free_port, wait_until
from tests.integration.test_kubectl_logs import WRITER, _stream_server_get, kubectl, logs, start_pod
from tests.support.cluster import Cluster, node_names

FILE_FLAGS = ("--tls-cert", "--tls-key", "--client-ca")


def restart_stream_server(cluster: Cluster, *flags: str) -> None:
    """The cluster's stream server again, on its port, without its certificate files and with ``flags``."""
    cluster.cloud["stream"].stop()
    argv = cluster.cloud_argv("stream")
    kept = [arg for i, arg in enumerate(argv) if arg not in FILE_FLAGS and argv[i - 1] not in FILE_FLAGS]
    cluster.starts += 1
    process = ManagedProcess(f"stream-{cluster.starts}", [*kept, *flags],
                             cluster.workdir / f"stream-{cluster.starts}.log").start()
    cluster.cloud["stream"] = process
    wait_until(lambda: tcp_ready("127.0.0.1", cluster.stream_port), timeout=30, what="the stream server listening",
               alive=process)


def test_issued_from_the_ca_the_api_server_checks_kubelets_with(cluster_factory: Any) -> None:
    (node,) = node_names(1)
    cluster: Cluster = cluster_factory([node])
    pki = cluster.api.ca_file.parent  # the API server runs with --kubelet-certificate-authority=pki/ca.crt
    restart_stream_server(cluster, "--serving-ca", str(pki / "ca.crt"), "--serving-ca-key", str(pki / "ca.key"))
    start_pod(cluster, "writer", node, WRITER)
    wait_until(lambda: logs(cluster, "writer").endswith("oops\n"), timeout=30, what="kubectl logs through it")
    assert logs(cluster, "writer", "--tail=2") == "line 5\noops\n"
    # The client CA came from the API server, and the CN check still holds: another client of that CA is refused.
    ca = CertificateAuthority((pki / "ca.crt").read_bytes(), (pki / "ca.key").read_bytes())
    code, body = _stream_server_get(cluster, f"/containerLogs/{cluster.namespace}/writer/main",
                                    ca.issue("someone-else", client=True))
    assert code == 403
    assert "may not open streams" in body


def test_by_default_issued_from_the_edgehive_ca_which_a_checking_api_server_refuses(cluster_factory: Any) -> None:
    (node,) = node_names(1)
    cluster: Cluster = cluster_factory([node])
    restart_stream_server(cluster)
    start_pod(cluster, "writer", node, WRITER)
    # This API server checks kubelets' certificates (--kubelet-certificate-authority), so it refuses one from
    # another CA: the README's reason to give --serving-ca on such a cluster.
    def refusal() -> subprocess.CompletedProcess[str] | None:
        result = kubectl(cluster, "logs", "writer", check=False)
        return result if result.returncode != 0 else None

    refused = wait_until(refusal, timeout=30, what="kubectl logs refused")
    assert "x509: certificate signed by unknown authority" in refused.stderr
    # The certificate is the edgehive CA's, and the API server's own kubelet client certificate is let in.
    secret = k8s.CoreV1Api(cluster.api.client).read_namespaced_secret(CA_SECRET, NAMESPACE)
    edgehive_ca = base64.b64decode(secret.data["ca.crt"]).decode()
    pki = cluster.api.ca_file.parent
    context = ssl.create_default_context(cadata=edgehive_ca)
    context.load_cert_chain(str(pki / "kubelet-client.crt"), str(pki / "kubelet-client.key"))

    def log_through_the_stream_server() -> str:
        url = f"https://127.0.0.1:{cluster.stream_port}/containerLogs/{cluster.namespace}/writer/main"
        with urllib.request.urlopen(url, context=context, timeout=10) as response:
            return str(response.read().decode())

    wait_until(lambda: log_through_the_stream_server().endswith("oops\n"), timeout=30,
               what="the log for the API server's kubelet client certificate")


KUBEADM_ADDRESS_ORDER = "InternalIP,ExternalIP,Hostname"


@contextlib.contextmanager
def kubeadm_like_apiserver(cluster: Cluster) -> Iterator[Path]:
    """A second kube-apiserver on the session's etcd, certificates and tokens, with kubeadm's kubelet flags: no
    --kubelet-certificate-authority, and the InternalIP address first. Yields its kubeconfig."""
    argv = Path(f"/proc/{cluster.api.pid}/cmdline").read_bytes().decode().split("\0")[:-1]
    port = free_port()
    work = cluster.workdir / "kubeadm-like"
    work.mkdir()
    changed = {"--secure-port": str(port), "--cert-dir": str(work / "certs"),
               "--kubelet-preferred-address-types": KUBEADM_ADDRESS_ORDER}
    argv = [f"{arg.split('=')[0]}={changed[arg.split('=')[0]]}" if arg.split("=")[0] in changed else arg
            for arg in argv if not arg.startswith("--kubelet-certificate-authority=")]
    argv.append("--endpoint-reconciler-type=none")  # the default Service's endpoints stay the first one's
    server = ManagedProcess("kubeadm-like-apiserver", argv, work / "kube-apiserver.log").start()
    try:
        kubeconfig = work / "kubeconfig"
        kubeconfig.write_text(re.sub(r"server: https://127\.0\.0\.1:\d+", f"server: https://127.0.0.1:{port}",
                                     cluster.api.kubeconfig.read_text()))
        context = ssl.create_default_context(cafile=str(cluster.api.ca_file))

        def ready() -> bool:
            request = urllib.request.Request(f"https://127.0.0.1:{port}/readyz",
                                             headers={"Authorization": f"Bearer {cluster.api.token}"})
            with urllib.request.urlopen(request, context=context, timeout=5) as response:
                return bool(response.status == 200)

        wait_until(ready, timeout=90, interval=0.5, what="the second kube-apiserver ready", alive=server)
        yield kubeconfig
    finally:
        server.stop()


@contextlib.contextmanager
def dnat(internal_ip: str, port: int) -> Iterator[None]:
    """KubeEdge's rule on the API server's host, as the README gives it (here narrowed to one node's address, on
    this shared machine): the node's kubelet port goes to the stream server."""
    rule = ["OUTPUT", "-p", "tcp", "-d", internal_ip, "--dport", str(port), "-m", "comment", "--comment",
            f"edgehive-test-dnat {os.getpid()}", "-j", "DNAT", "--to-destination", f"127.0.0.1:{port}"]
    subprocess.run(["iptables", "-w", "-t", "nat", "-I", *rule], check=True, capture_output=True, timeout=30)
    try:
        yield
    finally:
        subprocess.run(["iptables", "-w", "-t", "nat", "-D", *rule], check=True, capture_output=True, timeout=30)


def test_an_api_server_that_prefers_internal_ips_reaches_it_through_a_dnat_rule(cluster_factory: Any) -> None:
    (node,) = node_names(1)
    cluster: Cluster = cluster_factory([node])
    restart_stream_server(cluster)  # the default: its certificate from the edgehive CA, which nobody checks here
    start_pod(cluster, "writer", node, WRITER)
    internal_ip = {a.type: a.address for a in cluster.core.read_node(node).status.addresses}["InternalIP"]
    with kubeadm_like_apiserver(cluster) as kubeconfig:
        def kubectl_logs() -> subprocess.CompletedProcess[str]:
            return subprocess.run(["kubectl", "--kubeconfig", str(kubeconfig), "-n", cluster.namespace, "logs",
                                   "writer"], capture_output=True, text=True, timeout=30, check=False)

        # InternalIP first: the API server dials the node's own address, where nothing serves the kubelet port.
        refused = kubectl_logs()
        assert refused.returncode != 0
        assert f"{internal_ip}:{cluster.stream_port}" in refused.stderr, refused.stderr
        with dnat(internal_ip, cluster.stream_port):
            wait_until(lambda: kubectl_logs().stdout.endswith("oops\n"), timeout=30,
                       what="kubectl logs through the DNAT rule")
            assert kubectl_logs().stdout == "line 1\nline 2\nline 3\nline 4\nline 5\noops\n"
