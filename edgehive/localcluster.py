"""A local Kubernetes control plane for ``edgehive up`` (and the tests): etcd, kube-apiserver and, with
``control_plane``, kube-controller-manager and kube-scheduler.

scripts/setup builds the three v1.20.2 binaries from Debian's source package into
``/opt/edgehive/k8s/bin``; this module gives them certificates, a token and a kubeconfig
each (so the API server's bootstrap RBAC roles for system:kube-controller-manager and
system:kube-scheduler apply) in a state directory, and the command lines to run them.
"""

from __future__ import annotations

import base64
import os
import secrets
import shutil
import ssl
import subprocess
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from edgehive.errors import EdgehiveError
from runtime.pki import CertificateAuthority

CACHE = Path(os.environ.get("EDGEHIVE_CACHE", "/opt/edgehive"))
APISERVER_BIN = Path(os.environ.get("EDGEHIVE_APISERVER_BIN") or CACHE / "k8s" / "bin" / "kube-apiserver")
CONTROLLER_MANAGER_BIN = Path(os.environ.get("EDGEHIVE_CONTROLLER_MANAGER_BIN")
                              or APISERVER_BIN.parent / "kube-controller-manager")
SCHEDULER_BIN = Path(os.environ.get("EDGEHIVE_SCHEDULER_BIN") or APISERVER_BIN.parent / "kube-scheduler")
# Pods get the projected ``kube-api-access-*`` volume (bound token, kube-root-ca.crt, namespace) that
# clusters from 1.21 on give them by default; in 1.20 it is alpha, behind this gate, on the API server
# (the ServiceAccount admission plugin) and the controller-manager (its controllers' own bound tokens).
FEATURE_GATES = "--feature-gates=BoundServiceAccountTokenVolume=true"
CONTROLLER_MANAGER_USER = "system:kube-controller-manager"
SCHEDULER_USER = "system:kube-scheduler"
APISERVER_KUBELET_CLIENT = "kube-apiserver-kubelet-client"
EC_KEY = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]


class LocalClusterError(EdgehiveError, RuntimeError):
    """A part of the local API server is missing; the message says how to get it."""


DEFAULT_SANS = ("IP:127.0.0.1", "DNS:localhost")


def make_certificates(pki: Path, days: int = 365, sans: tuple[str, ...] = DEFAULT_SANS) -> None:
    """ca.crt/key, server.crt/key (for ``sans``) and a service-account key pair sa.key/pub.

    EC keys: RSA generation would be a noticeable part of the start-up time.
    """
    openssl = shutil.which("openssl")
    if openssl is None:
        raise LocalClusterError("openssl is missing: run scripts/setup (or apt-get install openssl)")
    pki.mkdir(parents=True, exist_ok=True)

    def run(*args: str) -> None:
        result = subprocess.run([openssl, *args], capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise LocalClusterError(f"openssl {args[0]} failed: {result.stderr.strip()}")

    run("req", "-x509", *EC_KEY, "-keyout", str(pki / "ca.key"), "-out", str(pki / "ca.crt"), "-days", str(days),
        "-subj", "/CN=edgehive-local-ca")
    run("req", *EC_KEY, "-keyout", str(pki / "server.key"), "-out", str(pki / "server.csr"),
        "-subj", "/CN=edgehive-local-server")
    (pki / "san.ext").write_text(san_line(sans))
    run("x509", "-req", "-in", str(pki / "server.csr"), "-CA", str(pki / "ca.crt"), "-CAkey", str(pki / "ca.key"),
        "-CAcreateserial", "-out", str(pki / "server.crt"), "-days", str(days), "-extfile", str(pki / "san.ext"))
    run("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", str(pki / "sa.key"))
    run("ec", "-in", str(pki / "sa.key"), "-pubout", "-out", str(pki / "sa.pub"))


KUBELET_CLIENT_CERT = "kubelet-client.crt"
STREAM_CERT, STREAM_KEY = "stream.crt", "stream.key"
"""The cloud stream server's serving certificate, for the same names as the API server's."""


def make_stream_certificates(pki: Path, sans: tuple[str, ...]) -> None:
    """The API server's kubelet client certificate (CN kube-apiserver-kubelet-client, kubeadm's name) and the
    cloud stream server's serving certificate, both from the local CA."""
    ca = CertificateAuthority((pki / "ca.crt").read_bytes(), (pki / "ca.key").read_bytes())
    for key_name, cert_name, (key, cert) in (
            ("kubelet-client.key", KUBELET_CLIENT_CERT, ca.issue(APISERVER_KUBELET_CLIENT, client=True)),
            (STREAM_KEY, STREAM_CERT, ca.issue("edgehive-stream", server_names=sans))):
        (pki / key_name).write_bytes(key)
        (pki / key_name).chmod(0o600)
        (pki / cert_name).write_bytes(cert)


FRONT_PROXY_CA, FRONT_PROXY_CLIENT = "front-proxy-ca.crt", "front-proxy-client.crt"
FRONT_PROXY_CN = "front-proxy-client"
"""kubeadm's names: the CA of the API server's aggregation layer (its request-header CA) and its client."""


def make_front_proxy_certificates(pki: Path) -> None:
    """A CA of its own for the aggregation layer, as kubeadm makes one: an aggregated server believes the
    user headers of any client certificate of that CA (with an allowed CN), so it must not be the CA that
    signs every client of the API server."""
    ca = CertificateAuthority.create("edgehive-front-proxy-ca")
    key, cert = ca.issue(FRONT_PROXY_CN, client=True)
    (pki / "front-proxy-ca.key").write_bytes(ca.key_pem)
    (pki / "front-proxy-ca.key").chmod(0o600)
    (pki / FRONT_PROXY_CA).write_bytes(ca.cert_pem)
    (pki / "front-proxy-client.key").write_bytes(key)
    (pki / "front-proxy-client.key").chmod(0o600)
    (pki / FRONT_PROXY_CLIENT).write_bytes(cert)


def san_line(sans: tuple[str, ...]) -> str:
    return f"subjectAltName={','.join(sans)}\n"


@dataclass
class LocalApiServer:
    state_dir: Path
    port: int = 6443
    etcd_port: int = 2379
    etcd_peer_port: int = 2380
    etcd_data: Path | None = None  # default: under state_dir
    bind_address: str = "127.0.0.1"
    sans: tuple[str, ...] = DEFAULT_SANS  # names the serving certificate is valid for
    # True: a whole control plane, with the ServiceAccount admission plugin (which needs the
    # controller-manager's service-account controller: without it every pod is refused). False: the API
    # server alone, which tests of our own controllers use, with that plugin off.
    control_plane: bool = False
    controller_manager_port: int = 10257  # secure ports (/healthz), on loopback
    scheduler_port: int = 10259

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def pki(self) -> Path:
        return self.state_dir / "pki"

    @property
    def kubeconfig(self) -> Path:
        return self.state_dir / "kubeconfig"

    @property
    def token(self) -> str:
        return (self.state_dir / "token").read_text().strip()

    def component_kubeconfig(self, component: str) -> Path:
        """The kubeconfig of kube-controller-manager or kube-scheduler."""
        return self.state_dir / f"{component}.kubeconfig"

    def prepare(self) -> None:
        """Certificates, tokens and kubeconfigs, made once and kept (so kubeconfigs handed out stay valid)."""
        binaries = [(str(APISERVER_BIN), "run scripts/setup to build it"),
                    ("etcd", "run scripts/setup (apt-get install etcd-server)")]
        if self.control_plane:
            binaries += [(str(CONTROLLER_MANAGER_BIN), "run scripts/setup to build it"),
                         (str(SCHEDULER_BIN), "run scripts/setup to build it")]
        for binary, fix in binaries:
            if shutil.which(binary) is None and not os.access(binary, os.X_OK):
                raise LocalClusterError(f"{binary} is missing: {fix}")
        self.state_dir.mkdir(parents=True, exist_ok=True)
        san_file = self.pki / "san.ext"
        if not (self.pki / "server.crt").exists() or not san_file.exists() or \
                san_file.read_text() != san_line(self.sans):
            make_certificates(self.pki, sans=self.sans)
            (self.pki / KUBELET_CLIENT_CERT).unlink(missing_ok=True)  # signed by the CA just replaced
        if not (self.pki / KUBELET_CLIENT_CERT).exists():
            make_stream_certificates(self.pki, self.sans)
        if not (self.pki / FRONT_PROXY_CLIENT).exists():
            make_front_proxy_certificates(self.pki)
        lines = [f'{_token(self.state_dir / "token")},admin,admin-uid,"system:masters"\n']
        for component, user in (("kube-controller-manager", CONTROLLER_MANAGER_USER),
                                ("kube-scheduler", SCHEDULER_USER)):
            token = _token(self.state_dir / f"token-{component}")
            lines.append(f"{token},{user},{user}\n")
            self.write_kubeconfig(self.component_kubeconfig(component), self.url, embed_ca=False, user=user,
                                  token=token)
        (self.state_dir / "tokens.csv").write_text("".join(lines))
        self.write_kubeconfig(self.kubeconfig, self.url, embed_ca=False)

    def write_kubeconfig(self, path: Path, server: str, *, embed_ca: bool = True, user: str = "admin",
                         token: str | None = None) -> None:
        """A kubeconfig for the admin token (or ``user``'s ``token``); ``embed_ca`` for one read on another host
        or container."""
        if embed_ca:
            ca = base64.b64encode((self.pki / "ca.crt").read_bytes()).decode()
            ca_line = f"    certificate-authority-data: {ca}\n"
        else:
            ca_line = f"    certificate-authority: {self.pki / 'ca.crt'}\n"
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(
            "apiVersion: v1\nkind: Config\n"
            f"clusters:\n- name: edgehive\n  cluster:\n    server: {server}\n{ca_line}"
            f"users:\n- name: {user}\n  user:\n    token: {token or self.token}\n"
            f"contexts:\n- name: edgehive\n  context:\n    cluster: edgehive\n    user: {user}\n"
            "current-context: edgehive\n")
        tmp.chmod(0o600)
        tmp.replace(path)  # readers never see half a file

    def etcd_argv(self) -> list[str]:
        data = self.etcd_data or self.state_dir / "etcd"
        client, peer = f"http://127.0.0.1:{self.etcd_port}", f"http://127.0.0.1:{self.etcd_peer_port}"
        return ["etcd", "--name", "default", "--data-dir", str(data), "--listen-client-urls", client,
                "--advertise-client-urls", client, "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
                "--initial-cluster", f"default={peer}", "--log-level", "warn"]

    def apiserver_argv(self) -> list[str]:
        pki = self.pki
        return [
            str(APISERVER_BIN), f"--etcd-servers=http://127.0.0.1:{self.etcd_port}",
            f"--bind-address={self.bind_address}", f"--secure-port={self.port}",
            *([] if self.bind_address == "0.0.0.0" else [f"--advertise-address={self.bind_address}"]),
            f"--tls-cert-file={pki / 'server.crt'}", f"--tls-private-key-file={pki / 'server.key'}",
            f"--client-ca-file={pki / 'ca.crt'}", f"--token-auth-file={self.state_dir / 'tokens.csv'}",
            "--authorization-mode=RBAC", "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={pki / 'sa.pub'}", f"--service-account-signing-key-file={pki / 'sa.key'}",
            "--service-cluster-ip-range=10.96.0.0/16",
            # The default admission plugins; ServiceAccount only with the controllers that serve it.
            *([FEATURE_GATES] if self.control_plane else ["--disable-admission-plugins=ServiceAccount"]),
            "--allow-privileged=true", f"--cert-dir={self.state_dir / 'certs'}", "--v=1",
            *self.kubelet_flags(), *self.aggregation_flags(),
        ]

    def kubelet_flags(self) -> list[str]:
        """How the API server calls kubelets, here the cloud stream server (cloud/stream/component.py): with
        the kubelet client certificate that server requires, verifying its serving certificate against the
        CA, at each node's Hostname address first (where EdgeController writes the stream server's host;
        Kubernetes' default order, made explicit so that a change of default cannot break logs)."""
        pki = self.pki
        return [f"--kubelet-client-certificate={pki / KUBELET_CLIENT_CERT}",
                f"--kubelet-client-key={pki / 'kubelet-client.key'}",
                f"--kubelet-certificate-authority={pki / 'ca.crt'}",
                "--kubelet-preferred-address-types=Hostname,InternalDNS,InternalIP,ExternalDNS,ExternalIP"]

    def aggregation_flags(self) -> list[str]:
        """The aggregation layer, for the metrics API (cloud/metricsapi): the API server calls aggregated servers
        with the front proxy's client certificate and names the user in kubeadm's headers; it dials an
        APIService's endpoint itself, since no kube-proxy runs here to serve a ClusterIP."""
        pki = self.pki
        return [f"--requestheader-client-ca-file={pki / FRONT_PROXY_CA}",
                f"--requestheader-allowed-names={FRONT_PROXY_CN}",
                "--requestheader-username-headers=X-Remote-User", "--requestheader-group-headers=X-Remote-Group",
                "--requestheader-extra-headers-prefix=X-Remote-Extra-",
                f"--proxy-client-cert-file={pki / FRONT_PROXY_CLIENT}",
                f"--proxy-client-key-file={pki / 'front-proxy-client.key'}",
                "--enable-aggregator-routing=true"]

    def controller_manager_argv(self) -> list[str]:
        """Leader election off: one instance per state directory. ``--port=0`` turns the insecure port off;
        the secure one serves /healthz (always allowed, no authentication needed). The node monitor's
        grace period stays at its default, 40 s, as on the clusters our users run."""
        pki = self.pki
        return [
            str(CONTROLLER_MANAGER_BIN), f"--kubeconfig={self.component_kubeconfig('kube-controller-manager')}",
            "--bind-address=127.0.0.1", f"--secure-port={self.controller_manager_port}", "--port=0",
            f"--cert-dir={self.state_dir / 'certs-controller-manager'}", "--leader-elect=false",
            "--use-service-account-credentials=true", f"--service-account-private-key-file={pki / 'sa.key'}",
            f"--root-ca-file={pki / 'ca.crt'}", f"--cluster-signing-cert-file={pki / 'ca.crt'}",
            f"--cluster-signing-key-file={pki / 'ca.key'}", FEATURE_GATES, "--v=1",
        ]

    def scheduler_argv(self) -> list[str]:
        return [
            str(SCHEDULER_BIN), f"--kubeconfig={self.component_kubeconfig('kube-scheduler')}",
            "--bind-address=127.0.0.1", f"--secure-port={self.scheduler_port}", "--port=0",
            f"--cert-dir={self.state_dir / 'certs-scheduler'}", "--leader-elect=false", "--v=1",
        ]

    def controller_manager_healthy(self) -> bool:
        return _healthz(self.controller_manager_port)

    def scheduler_healthy(self) -> bool:
        return _healthz(self.scheduler_port)

    def ready(self) -> bool:
        """True once /readyz answers 200 to our token."""
        context = ssl.create_default_context(cafile=str(self.pki / "ca.crt"))
        request = urllib.request.Request(f"{self.url}/readyz", headers={"Authorization": f"Bearer {self.token}"})
        try:
            with urllib.request.urlopen(request, context=context, timeout=2) as response:
                return bool(response.status == 200)
        except (OSError, ValueError):
            return False


def _token(path: Path) -> str:
    """The token kept in ``path``, made on first use."""
    if not path.exists():
        path.write_text(secrets.token_hex(16) + "\n")
        path.chmod(0o600)
    return path.read_text().strip()


def _healthz(port: int) -> bool:
    """True once a component's secure port answers /healthz with 200. Its serving certificate is one it made
    itself (--cert-dir), trusted by nobody: /healthz tells nothing secret, so it is not verified."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        with urllib.request.urlopen(f"https://127.0.0.1:{port}/healthz", context=context, timeout=2) as response:
            return bool(response.status == 200)
    except (OSError, ValueError):
        return False
