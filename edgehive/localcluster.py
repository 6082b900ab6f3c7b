"""A local Kubernetes API server for ``edgehive up`` (and the tests): etcd plus kube-apiserver.

scripts/setup builds kube-apiserver v1.20.2 from Debian's source package into
``/opt/edgehive/k8s/bin``; this module gives it certificates, an admin token and a
kubeconfig in a state directory, and the command lines to run it and etcd.
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

CACHE = Path(os.environ.get("EDGEHIVE_CACHE", "/opt/edgehive"))
APISERVER_BIN = Path(os.environ.get("EDGEHIVE_APISERVER_BIN") or CACHE / "k8s" / "bin" / "kube-apiserver")
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

    def prepare(self) -> None:
        """Certificates, token and kubeconfig, made once and kept (so kubeconfigs handed out stay valid)."""
        for binary, fix in ((str(APISERVER_BIN), "run scripts/setup to build it"),
                            ("etcd", "run scripts/setup (apt-get install etcd-server)")):
            if shutil.which(binary) is None and not os.access(binary, os.X_OK):
                raise LocalClusterError(f"{binary} is missing: {fix}")
        self.state_dir.mkdir(parents=True, exist_ok=True)
        san_file = self.pki / "san.ext"
        if not (self.pki / "server.crt").exists() or not san_file.exists() or \
                san_file.read_text() != san_line(self.sans):
            make_certificates(self.pki, sans=self.sans)
        token_file = self.state_dir / "token"
        if not token_file.exists():
            token_file.write_text(secrets.token_hex(16) + "\n")
            token_file.chmod(0o600)
        (self.state_dir / "tokens.csv").write_text(f'{self.token},admin,admin-uid,"system:masters"\n')
        self.write_kubeconfig(self.kubeconfig, self.url, embed_ca=False)

    def write_kubeconfig(self, path: Path, server: str, *, embed_ca: bool = True) -> None:
        """A kubeconfig for the admin token; ``embed_ca`` for one read on another host or container."""
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
            f"users:\n- name: admin\n  user:\n    token: {self.token}\n"
            "contexts:\n- name: edgehive\n  context:\n    cluster: edgehive\n    user: admin\n"
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
            "--service-cluster-ip-range=10.96.0.0/16", "--disable-admission-plugins=ServiceAccount",
            "--allow-privileged=true", f"--cert-dir={self.state_dir / 'certs'}", "--v=1",
        ]

    def ready(self) -> bool:
        """True once /readyz answers 200 to our token."""
        context = ssl.create_default_context(cafile=str(self.pki / "ca.crt"))
        request = urllib.request.Request(f"{self.url}/readyz", headers={"Authorization": f"Bearer {self.token}"})
        try:
            with urllib.request.urlopen(request, context=context, timeout=2) as response:
                return bool(response.status == 200)
        except (OSError, ValueError):
            return False
